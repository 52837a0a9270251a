"""Rendering, in one place: the terminal (:mod:`.terminal`), Markdown and LaTeX tables (:mod:`.tables`),
plots (:mod:`.plots`), and a comparison's files (:mod:`.outputs`)."""
