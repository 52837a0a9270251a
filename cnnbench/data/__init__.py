"""Datasets: what each one is (:mod:`.specs`), readers into uint8 arrays (:mod:`.readers`, your own
folders in :mod:`.imagefolder`), and the loader that batches them on the device (:mod:`.loader`).

Kept empty of imports: the CLI reads :mod:`.specs` to declare its options without numpy or torch."""
