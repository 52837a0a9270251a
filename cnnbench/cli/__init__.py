"""The command-line interface (:mod:`.app`), its options made from the library's dataclass fields
(:mod:`.options`)."""

from cnnbench.cli.app import app, main

__all__ = ["app", "main"]
