"""``profile --latency``: what a model costs to use. Per-request inference latency at batch 1 (or the batch
sizes asked) through each backend, with p50, p90, p99, max and mean over ``requests`` timed requests
after ``warmup`` untimed ones; each row appended to OUT/latency.csv with its conditions.

Backends (:data:`cnnbench.settings.BACKENDS`): PyTorch eager; ``torch.compile``; ONNX Runtime (the model
exported once by ``torch.onnx.export``, the CUDA execution provider where the installed onnxruntime has
it, the provider that ran recorded); AOTInductor (``torch.export`` + ``aoti_compile_and_package``).
Exporting, compiling and creating a session are timed apart (``prepare_s``), never inside the requests.

Before a backend is timed its outputs are compared with eager's on the same inputs: the largest absolute
difference and the share of inputs whose top-1 class agrees are recorded, and a backend beyond the
tolerance stated in the row is marked (``disagrees``), not silently timed as if it gave the same
answers. A backend that cannot take the model (an op ONNX lacks, a missing package) is its row's status
with the reason; the other backends still run.

With ``weights`` (a trained run), the run's last checkpoint is measured, and each backend's top-1
accuracy on the run's test split is recorded beside eager's. The model runs in eval mode under
``torch.inference_mode`` (no autograd), in fp32.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnbench.errors import InvalidArgumentError, first_line

CHECK_INPUTS = 8  # random batches each backend's outputs are compared on
TOLERANCE = (
    1e-3  # largest |difference| from eager allowed, relative to eager's largest |logit| (and at least 1)
)


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50, p90, p99 (linear interpolation between ranks, as numpy's default), max and mean, in ms."""
    import numpy as np

    values = np.asarray(latencies_ms, dtype=float)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"latency_ms_p50": float(p50), "latency_ms_p90": float(p90), "latency_ms_p99": float(p99),
            "latency_ms_max": float(values.max()), "latency_ms_mean": float(values.mean())}  # fmt: skip


class Backend:
    """A prepared model: ``run(x)`` -> logits (a torch tensor on the model's device)."""

    name = "eager"

    def __init__(self, model: Any, example: Any, device: str, threads: int, folder: Path) -> None:
        self.model, self.device = model, device
        self.version = __import__("torch").__version__
        self.provider = ""

    def run(self, x: Any) -> Any:
        return self.model(x)


class CompiledBackend(Backend):
    name = "compile"

    def __init__(self, model: Any, example: Any, device: str, threads: int, folder: Path) -> None:
        import torch

        super().__init__(model, example, device, threads, folder)
        self.compiled = torch.compile(model)
        self.compiled(example)  # compiled here, for this shape: the requests time the compiled code only

    def run(self, x: Any) -> Any:
        return self.compiled(x)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: Any, example: Any, device: str, threads: int, folder: Path) -> None:
        import torch

        try:
            import onnxruntime as ort
        except ImportError:
            raise InvalidArgumentError(
                'expected onnxruntime for --backend onnxruntime, got none installed: pip install "cnnbench[deploy]"'
            ) from None
        path = folder / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model, (example,), str(path), input_names=["x"], output_names=["logits"], dynamo=False
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        wanted = (
            ["CUDAExecutionProvider"]
            if device.startswith("cuda") and "CUDAExecutionProvider" in available
            else []
        )
        self.session = ort.InferenceSession(str(path), options, providers=[*wanted, "CPUExecutionProvider"])
        self.device, self.version = device, ort.__version__
        self.provider = self.session.get_providers()[0]

    def run(self, x: Any) -> Any:
        import torch

        out = self.session.run(None, {"x": x.detach().cpu().numpy()})[0]  # host copies are part of a request
        return torch.from_numpy(out)


class AotInductorBackend(Backend):
    name = "aotinductor"

    def __init__(self, model: Any, example: Any, device: str, threads: int, folder: Path) -> None:
        import torch

        super().__init__(model, example, device, threads, folder)
        program = torch.export.export(model, (example,))
        package = torch._inductor.aoti_compile_and_package(program, package_path=str(folder / "model.pt2"))
        self.loaded = torch._inductor.aoti_load_package(package)

    def run(self, x: Any) -> Any:
        return self.loaded(x)


BACKEND_CLASSES = {b.name: b for b in (Backend, CompiledBackend, OnnxRuntimeBackend, AotInductorBackend)}


def _timed(run: Callable[[Any], Any], x: Any, device: str, warmup: int, requests: int) -> list[float]:
    """Each request's wall time in ms: CUDA events around it on a GPU (then synchronised), a monotonic
    clock on the CPU."""
    import torch

    cuda = device.startswith("cuda")
    for _ in range(warmup):
        run(x)
    if cuda:
        torch.cuda.synchronize(device)
    times = []
    for _ in range(requests):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            run(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _agreement(backend: Backend, reference: list[Any], inputs: list[Any]) -> dict[str, Any]:
    from cnnbench.models.outputs import logits_of

    worst, agree, count, scale = 0.0, 0, 0, 1.0
    for x, expected in zip(inputs, reference, strict=True):
        got = logits_of(backend.run(x)).float().cpu()
        worst = max(worst, float((got - expected).abs().max()))
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        count += len(expected)
        scale = max(scale, float(expected.abs().max()))
    tolerance = TOLERANCE * scale
    return {"max_abs_diff": worst, "top1_agreement_pct": 100.0 * agree / count, "tolerance": tolerance,
            "agrees": worst <= tolerance}  # fmt: skip


def _accuracy(backend: Backend, loader: Any, batch: int, device: str) -> float:
    """Top-1 accuracy (%) over the test split in batches of ``batch`` (the shape the backend was prepared
    for: the last one padded, its padding dropped)."""
    import torch

    from cnnbench.models.outputs import logits_of

    correct = total = 0
    for x, y in loader.epoch(0):
        n = len(y)
        if n < batch:
            x = torch.cat([x, x.new_zeros((batch - n, *x.shape[1:]))])
        out = logits_of(backend.run(x)).float()[:n].to(y.device)
        correct += int((out.argmax(1) == y).sum())
        total += n
    return 100.0 * correct / total


def _trained(config: Any) -> tuple[Any, Any, tuple[int, int, int], dict[str, Any]]:
    """The run ``config.weights`` names: its model with its last weights, its test split (as the run
    evaluated it) and what the rows say of it."""
    from cnnbench.data.readers import load_split
    from cnnbench.data.specs import get_dataset_spec, parse_input_size
    from cnnbench.models.build import build
    from cnnbench.recipe import read_job
    from cnnbench.store.runs import RunStore, find_run
    from cnnbench.training.conditions import data_options

    folder = find_run(config.weights, Path(config.out))
    store = RunStore.open(folder.parent.parent, folder.name)
    checkpoint = store.load_checkpoint()
    if checkpoint is None:
        raise InvalidArgumentError(
            f"expected a run with checkpoints for --weights, got {folder.name} (it saved none)"
        )
    recipe = read_job(folder / "config.json")
    recorded = store.read_config()
    shape = parse_input_size(str(recorded["input_size"]))
    model, _ = build(recipe.model, recipe.options, shape, int(recorded["num_classes"]))
    model.load_state_dict(checkpoint.state["model"])
    spec = get_dataset_spec(recipe.dataset)
    test = load_split(spec.name, "test", recipe.data_dir, **data_options(recipe))
    return model, test, shape, {"weights_run": folder.name, "weights_epoch": checkpoint.epoch, "model": recipe.model,
                                  "input_size": recorded["input_size"], "num_classes": int(recorded["num_classes"])}  # fmt: skip


def latency(
    config: Any, device: str, say: Callable[[str], None], tags: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The rows of ``profile --latency`` (see the module's docstring), each appended to OUT/latency.csv;
    ``tags`` lead each row (``compare --latency``: the variant)."""
    import torch

    from cnnbench.data.specs import format_input_size
    from cnnbench.device import usable_cpus
    from cnnbench.models import format_options, get_model_info
    from cnnbench.models.build import build, resolve_input
    from cnnbench.models.outputs import logits_of
    from cnnbench.store.manifest import manifest
    from cnnbench.store.tables import append_row, check_table, ensure_dir, environment

    out = ensure_dir(Path(config.out))
    check_table(out / "latency.csv")
    threads = config.threads or usable_cpus()
    torch.set_num_threads(threads)
    if config.weights is not None:
        model, test, shape, about = _trained(config)
        info = get_model_info(about["model"])
        if get_model_info(config.model).name != info.name:
            raise InvalidArgumentError(
                f"expected MODEL to be the model of run {about['weights_run']} ({info.name}) with --weights, "
                f"got {config.model!r}"
            )
    else:
        info = get_model_info(config.model)
        shape, classes = resolve_input(info.name, config.input_size, config.dataset, config.num_classes)
        torch.manual_seed(0)
        model, _ = build(info.name, config.options, shape, classes)
        test, about = None, {}
    model = model.to(device).eval()
    from cnnbench.settings import DEFAULT_BATCH_SIZES

    # the sweep's sizes unless asked for: a latency is per request, batch 1
    batches = [1] if tuple(config.batch_sizes) == DEFAULT_BATCH_SIZES else sorted(config.batch_sizes)
    env = {**environment(device), "cpu_model": manifest()["cpu_model"]}  # with what the CPU threads ran on
    rows = []
    with torch.inference_mode(), tempfile.TemporaryDirectory(prefix="cnnbench-latency-") as scratch:
        for batch in batches:
            generator = torch.Generator().manual_seed(batch)
            inputs = [torch.randn(batch, *shape, generator=generator).to(device) for _ in range(CHECK_INPUTS)]
            reference = [logits_of(model(x)).float().cpu() for x in inputs]
            loader = eager_accuracy = None
            if test is not None:  # the test split as the run evaluated it, in batches of this row's size
                from cnnbench.data.loader import DeviceLoader

                loader = DeviceLoader(test, batch, device, False, False, 0, False, True)
                eager_accuracy = _accuracy(
                    Backend(model, inputs[0], device, threads, Path(scratch)), loader, batch, device
                )
            for name in config.backends:
                row: dict[str, Any] = {
                    **(tags or {}), "model": info.name, "options": format_options(info.parse_options(config.options)),
                    "input_size": format_input_size(shape), "batch_size": batch, "backend": name,
                    "backend_version": "", "provider": "", "precision": "fp32", "threads": threads,
                    "eval_mode": True, "autograd": False, "warmup_requests": config.warmup,
                    "timed_requests": config.requests, "status": "ok", **about,
                }  # fmt: skip
                say(f"{info.name} at batch {batch} through {name}: {config.warmup} untimed and "
                    f"{config.requests} timed requests on {device}, {threads} threads")  # fmt: skip
                try:
                    folder = Path(scratch) / f"{name}-{batch}"
                    folder.mkdir()
                    t0 = time.perf_counter()
                    backend = BACKEND_CLASSES[name](model, inputs[0], device, threads, folder)
                    row["prepare_s"] = time.perf_counter() - t0
                    row["backend_version"], row["provider"] = backend.version, backend.provider
                    row.update(_agreement(backend, reference, inputs))
                    if not row["agrees"]:
                        row["status"] = (f"disagrees: max |difference| from eager {row['max_abs_diff']:.3g} > "
                                         f"tolerance {row['tolerance']:.3g}")  # fmt: skip
                    row.update(
                        percentiles(_timed(backend.run, inputs[0], device, config.warmup, config.requests))
                    )
                    row["samples_per_s"] = batch / row["latency_ms_p50"] * 1e3
                    if loader is not None:
                        row["test_acc"] = _accuracy(backend, loader, batch, device)
                        row["eager_test_acc"] = eager_accuracy
                except InvalidArgumentError as exc:
                    row["status"] = f"failed: {first_line(exc)}"
                except Exception as exc:  # noqa: BLE001  (a backend that cannot take this model: its row says why)
                    row["status"] = f"failed: {type(exc).__name__}: {first_line(exc)}"
                finally:
                    with contextlib.suppress(NameError):
                        del backend
                row.update(env)
                rows.append(row)
                append_row(out / "latency.csv", row)
                if row["status"] == "ok" or row["status"].startswith("disagrees"):
                    say(f"  p50 {row['latency_ms_p50']:.3f} ms, p99 {row['latency_ms_p99']:.3f} ms"
                        + (f"; {row['status']}" if row["status"] != "ok" else ""))  # fmt: skip
                else:
                    say(f"  {row['status']}")
    return rows
