"""One training run: the step (:mod:`.step`, its call order written down), the run around it
(:mod:`.trainer`), its conditions and statuses, and data-parallel training (:mod:`.distributed`)."""
