"""The choices a command-line option may take, defined once for the library and the CLI (no torch here,
so ``cnnbench --help`` stays fast)."""

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULERS = ("step", "cosine", "onecycle", "none")
PRECISIONS = ("fp32", "bf16", "fp16")  # what cnnbench.device.autocast accepts
PROFILE_MODES = ("infer", "train")
LAUNCHERS = ("inline", "local", "slurm")  # compare --launcher: here, submitit local, submitit Slurm
