"""The README's commands, run as a new user would in a fresh clone (on the CPU, with small synthetic data
where they train), leave the clone as git has it: the user's measurements never rewrite ours."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

# It runs every command of the README in a fresh clone (a minute and more): the slow tier.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# What needs a GPU, a cluster, several processes or a folder of the user's own is left out here (the
# launcher, data-parallel and own-data tests run those paths).
NEEDS_MORE = ("--gpus", "--launcher slurm", "imagefolder", "torchrun")
TINY = [
    "-d",
    "synthetic",
    "--synthetic-size",
    "32",
    "--device",
    "cpu",
    "--warmup-steps",
    "0",
    "--eval-batch-size",
    "32",
]


def readme_commands(readme: Path) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", readme.read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("cnnbench ")]


def on_the_cpu(argv: list[str], found: dict[str, str]) -> list[str]:
    """A README command made small enough for a test on two cores, doing the same thing."""
    argv = [a.replace("RUN_ID", found.get("RUN_ID", "RUN_ID")) for a in argv]
    argv = [found.get("NAME", a) if a.endswith("/NAME") else a for a in argv]
    command = argv[0]
    if "--resume" in argv:
        return [*argv, "--epochs", "2"]
    if "--price-per-gpu-hour" in argv:  # a price of GPU-hours, which the CPU uses none of (refused there)
        i = argv.index("--price-per-gpu-hour")
        del argv[i : i + 2]
    if command in ("train", "compare") and "--from" not in argv and "--config" not in argv:
        argv = [a for a in argv if a not in ("-d", "synthetic")]
        if "--val-split" in argv:
            argv[argv.index("--val-split") + 1] = "8"  # of 32 images
        for flag in ("--epochs", "-e", "--seeds"):
            if flag in argv:
                i = argv.index(flag)
                argv[i + 1] = "1" if flag != "--seeds" else "2"
        epochs = int(argv[argv.index("--warmup-epochs") + 1]) + 1 if "--warmup-epochs" in argv else 1
        argv += [*TINY, "-e", str(epochs), "-b", "32", "--precision", "fp32"]
    if command == "profile":
        if "--batch-sizes" in argv:
            i = argv.index("--batch-sizes")
            argv[i + 1] = "2"
        argv += ["--batch-sizes", "2", "--warmup", "1", "--iters", "2", "--device", "cpu"]
    return argv


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)
def test_the_readmes_commands_leave_a_clone_as_git_has_it(tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    monkeypatch.chdir(clone)
    # A model named by module puts the working folder on sys.path, as `python -m` would: undone after the
    # test, or processes started later in this one (plot workers) would import cnnbench from the clone.
    monkeypatch.setattr(sys, "path", list(sys.path))
    found: dict[str, str] = {}
    ran = []
    for line in readme_commands(clone / "README.md"):
        if any(part in line for part in NEEDS_MORE):
            continue
        argv = on_the_cpu(shlex.split(line)[1:], found)
        before = set((clone / "results" / "local" / "runs").glob("*"))
        result = cli(*argv, columns=120)
        assert result.exit_code == 0, f"{' '.join(argv)}\n{result.output}"
        ran.append(argv[0])
        new = sorted(set((clone / "results" / "local" / "runs").glob("*")) - before)
        if argv[0] == "train" and new and "RUN_ID" not in found:
            found["RUN_ID"] = new[0].name  # the README's RUN_ID: a run that train wrote, checkpoints and all
        comparisons = sorted((clone / "results" / "local" / "compare").glob("*"))
        if comparisons:
            found["NAME"] = f"results/local/compare/{comparisons[0].name}"
    assert {"summary", "train", "compare", "profile", "list", "pool", "report"} <= set(ran)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert status == "", status
    assert (clone / "results" / "local" / ".gitignore").read_text().splitlines()[-1] == "*"
