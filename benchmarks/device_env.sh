# Sourced by the gpu_*.sh scripts: what every device call needs before its own work.
# fvcore and its dependencies from the carried wheels (.whl/), the CIFAR-10 copy written from the
# carried .data/ to /tmp/data, results collected in $res and packed into $out by save().
set -u
out=${1:?OUTDIR}
res=/tmp/res
mkdir -p "$out" "$res"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 CNNBENCH_DATA_DIR=/tmp/data COLUMNS=250
# The device's site-packages hold no bytecode and cannot take any, so every process there compiled
# torch's Python source again (5.9 s of a 2-epoch compare, cProfile) and matplotlib built its font
# cache: costs an installed machine pays once. Writable caches, filled once here, make each timed
# process start as it would on a user's machine.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pycache MPLCONFIGDIR=/tmp/mplconfig
python3 -c "import cnnbench.cli, cnnbench.train, cnnbench.compare, torch, torchvision, pandas, fvcore.nn, matplotlib.pyplot as plt; plt.figure()"
python3 .data/make_cifar10.py /tmp/data >/dev/null
# Checkpoints stay behind: one VGG-16 run's are gigabytes, and $OUT brings back 16 MB a file.
save() { tar czf "$out/results.tgz" --exclude='*.pt' -C "$res" . ; }
