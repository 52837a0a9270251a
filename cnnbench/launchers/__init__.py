"""Where a comparison's runs train: one :class:`~cnnbench.launchers.base.Launcher` interface for inline
runs (:mod:`.inline`), per-GPU workers (:mod:`.workers`) and submitit's local and Slurm executors
(:mod:`.scheduler`)."""
