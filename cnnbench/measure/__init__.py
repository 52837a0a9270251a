"""What a model costs: counts and memory (:mod:`.summary`, :mod:`.memory`), step times (:mod:`.profile`),
data-parallel scaling (:mod:`.scaling`), and the chapter's pooling exercise (:mod:`.pooling`)."""
