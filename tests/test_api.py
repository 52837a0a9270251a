"""cnnbench from Python: each function against its command-line twin (same rows, same numbers, same
files), models given as Python objects, keywords checked as a job file's are, results a notebook shows."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import cli, tiny_argv

import cnnbench
from cnnbench.errors import CnnbenchError, InvalidArgumentError, ResultsError
from cnnbench.models import get_model

TINY = dict(
    dataset="synthetic", input_size="3x16x16", synthetic_size=64, batch_size=16, epochs=2, device="cpu"
)
# What differs between two runs of one recipe: when and how fast they ran, and where.
WHEN = {"run_id", "run_dir", "date", "started", "ended", "run_name"}
TIMED = (
    "time",
    "_s",
    "images_per_s",
    "warmup",
    "energy",
    "J_per",
    "power",
    "peak_",
    "rss",
    "gpu_hours",
    "cost",
)


def _same_measure(a: dict, b: dict) -> dict:
    """The cells of two rows that differ, leaving out times, dates and ids."""
    keys = [k for k in a if k not in WHEN and not any(t in k for t in TIMED)]
    return {
        k: (a[k], b.get(k)) for k in keys if not (pd.isna(a[k]) and pd.isna(b.get(k))) and a[k] != b.get(k)
    }


def test_importing_cnnbench_imports_no_torch():
    code = "import sys, cnnbench; cnnbench.__all__; dir(cnnbench); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert {"summary", "train", "compare", "profile", "runs", "list_models", "create_model"} <= set(
        cnnbench.__all__
    )


def test_summary_is_its_command_lines_twin(tmp_path):
    api = cnnbench.summary("lenet5", input_size="3x32x32", options={"pool": "max"}, out=tmp_path / "api")
    typed = cli(
        "summary", "lenet5", "-i", "3x32x32", "-o", "pool=max", "--out", tmp_path / "cli", "-f", "json"
    )
    assert typed.exit_code == 0, typed.output
    assert api.layers.to_dict("records") == json.loads(typed.output)["layers"]
    rows = [pd.read_csv(tmp_path / side / "summary.csv").iloc[0].to_dict() for side in ("api", "cli")]
    assert _same_measure(*rows) == {}
    assert api.totals["params"] == 62_006 and api.totals["options"] == "pool=max"


def test_a_module_and_a_lambda_are_measured_as_the_registered_model(tmp_path):
    registered = cnnbench.summary("lenet5", out=tmp_path)
    module = cnnbench.summary(get_model("lenet5"), name="my-lenet", input_size="1x28x28", out=tmp_path)
    made = cnnbench.summary(lambda num_classes, input_shape: get_model("lenet5", input_shape, num_classes),
                            name="made", input_size=(1, 28, 28), out=tmp_path)  # fmt: skip
    for other in (module, made):
        assert other.layers.equals(registered.layers)
        # the registry names its options' defaults; an object has none of its own
        assert _same_measure(registered.totals, other.totals) == {
            "model": ("lenet5", other.totals["model"]),
            "options": ("pool=avg", ""),
        }
    assert pd.read_csv(tmp_path / "summary.csv").model.tolist() == ["lenet5", "my-lenet", "made"]


def test_a_factory_trains_as_the_registered_model_and_a_module_keeps_its_weights(tmp_path):
    registered = cnnbench.train("lenet5", **TINY, run_name="reg", out=tmp_path)
    made = cnnbench.train(lambda num_classes, input_shape: get_model("lenet5", input_shape, num_classes), name="made",
                          **TINY, run_name="made", out=tmp_path)  # fmt: skip
    columns = ["train_loss", "train_acc", "test_loss", "test_acc", "lr"]
    pd.testing.assert_frame_equal(registered.epochs[columns], made.epochs[columns])
    module = get_model("lenet5", (3, 16, 16), 10)
    before = [p.detach().clone() for p in module.parameters()]
    trained = cnnbench.train(module, name="mine", **TINY, out=tmp_path)
    assert trained.status in ("ok", "not learning") and len(trained.epochs) == 2
    assert all(
        torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True)
    )  # the caller's object is untouched
    assert cnnbench.runs(out=tmp_path).model.tolist() == ["lenet5", "made", "mine"]


def test_train_is_its_command_lines_twin(tmp_path):
    api = cnnbench.train("lenet5", **TINY, run_name="r", out=tmp_path / "api")
    typed = cli("train", "lenet5", *tiny_argv(), "--run-name", "r", "--out", tmp_path / "cli")
    assert typed.exit_code == 0, typed.output
    epochs = [pd.read_csv(tmp_path / side / "runs" / "r" / "epochs.csv") for side in ("api", "cli")]
    columns = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"]
    pd.testing.assert_frame_equal(epochs[0][columns], epochs[1][columns])
    rows = [pd.read_csv(tmp_path / side / "runs.csv").iloc[0].to_dict() for side in ("api", "cli")]
    assert _same_measure(*rows) == {}
    assert api.summary["conditions_hash"] == rows[1]["conditions_hash"]
    assert api.epochs[columns].equals(epochs[0][columns])


def test_compare_is_its_command_lines_twin_and_takes_objects(tmp_path):
    api = cnnbench.compare({"lenet5": "lenet5", "made": lambda num_classes: get_model("lenet5", (3, 16, 16), num_classes)},
                           **TINY, name="c", out=tmp_path / "api")  # fmt: skip
    typed = cli("compare", "lenet5", *tiny_argv(), "--name", "c", "--out", tmp_path / "cli")
    assert typed.exit_code == 0, typed.output
    assert api.table.variant.tolist() == ["lenet5", "made"]
    cli_tidy = pd.read_csv(tmp_path / "cli" / "compare" / "c" / "tidy.csv").iloc[0].to_dict()
    api_tidy = pd.read_csv(tmp_path / "api" / "compare" / "c" / "tidy.csv")
    assert _same_measure(api_tidy.iloc[0].to_dict(), cli_tidy) == {}
    assert (
        api_tidy.final_test_acc.tolist()[0] == api_tidy.final_test_acc.tolist()[1]
    )  # same weights, same data
    assert (api.folder / "table.md").is_file() and api.tidy.run_id.tolist() == api_tidy.run_id.tolist()


def test_compare_times_latency_from_python_as_from_the_command_line(tmp_path):
    """``latency=True, backends="eager"`` as ``--latency --backend eager``: the same columns, from the rows."""
    result = cnnbench.compare(["lenet5"], **TINY, name="l", latency=True, backends="eager", requests=5,
                              out=tmp_path)  # fmt: skip
    rows = pd.read_csv(tmp_path / "compare" / "l" / "latency.csv")
    assert rows.variant.tolist() == ["lenet5"] and rows.timed_requests.tolist() == [5]
    assert result.latency.latency_ms_p50.tolist() == rows.latency_ms_p50.tolist()
    assert result.table.latency_ms_p50_eager.tolist() == rows.latency_ms_p50.tolist()
    assert "--latency --requests 5" in result.result.command


def test_objects_stay_in_this_process(tmp_path):
    with pytest.raises(
        InvalidArgumentError, match="expected models that another process can build with --launcher local"
    ):
        cnnbench.compare(
            {"mine": get_model("lenet5", (3, 16, 16), 10)}, **TINY, launcher="local", out=tmp_path
        )
    assert not (tmp_path / "runs.csv").exists()  # refused before any work


def test_profile_writes_the_rows_profile_writes(tmp_path):
    result = cnnbench.profile(
        "lenet5", device="cpu", batch_sizes="1,4", modes="infer", warmup=1, iters=2, out=tmp_path
    )
    assert result.rows.batch_size.tolist() == [1, 4] and set(result.rows["mode"]) == {"infer"}
    assert pd.read_csv(tmp_path / "profile.csv").batch_size.tolist() == [1, 4]
    assert "samples/s" in str(result) and "step ms (median)" in result._repr_html_()


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda: cnnbench.train("lenet5", learnin_rate=0.1), "got unknown 'learnin_rate'"),
     (lambda: cnnbench.train("lenet5", epoch=3), "got unknown 'epoch' (did you mean epochs?)"),
     (lambda: cnnbench.train("lenet5", image_size=64), "got unknown 'image_size' (--image-size on the command line sets input_size)"),
     (lambda: cnnbench.compare(["lenet5"], time=30), "got unknown 'time' (--time on the command line sets time_min)"),
     (lambda: cnnbench.profile("lenet5", mode="train"), "got unknown 'mode' (--mode on the command line sets modes)"),
     (lambda: cnnbench.summary("lenet5", batch=2), "expected keywords of cnnbench.summary: batch_size, dataset, deploy_form, depth"),
     (lambda: cnnbench.compare(["lenet5"], seed_count=2), "expected keywords of cnnbench.compare:"),
     (lambda: cnnbench.profile("lenet5", iterations=3), "(did you mean iters?)"),
     (lambda: cnnbench.summary("lenet6"), "unknown model 'lenet6'; did you mean lenet, lenet5"),
     (lambda: cnnbench.train(lambda num_classes: None), "expected name= for a lambda"),
     (lambda: cnnbench.summary(get_model("lenet5"), name="vgg16"), "a registered model (name=... gives it another)"),
     (lambda: cnnbench.summary(get_model("lenet5"), name="<b>x</b>"), "expected a name for the model's rows"),
     (lambda: cnnbench.summary(42), "expected a model name, an nn.Module or a callable that makes one, got int"),
     (lambda: cnnbench.train("lenet5", **{**TINY, "epochs": 0}), "expected --epochs >= 1, got 0")],
)  # fmt: skip
def test_mistakes_raise_the_command_lines_one_line_errors(call, message):
    with pytest.raises(CnnbenchError) as raised:
        call()
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_runs_is_the_store_filtered(tmp_path):
    for seed, options in ((0, {}), (1, {}), (0, {"pool": "max"})):
        cnnbench.train("lenet5", **{**TINY, "epochs": 1}, seed=seed, options=options, out=tmp_path)
    everything = cnnbench.runs(out=tmp_path)
    assert len(everything) == 3 and list(everything.columns) == list(
        pd.read_csv(tmp_path / "runs.csv").columns
    )
    assert cnnbench.runs(out=tmp_path, seed=0).options.tolist() == ["pool=avg", "pool=max"]
    assert len(cnnbench.runs(out=tmp_path, seed=[0, 1], options=lambda o: o.endswith("avg"))) == 2
    with pytest.raises(InvalidArgumentError, match=r"got unknown 'sed' \(did you mean seed\?\)"):
        cnnbench.runs(out=tmp_path, sed=0)
    with pytest.raises(ResultsError, match="got no runs.csv there"):
        cnnbench.runs(out=tmp_path / "elsewhere")


def test_results_show_in_a_notebook_as_the_terminal_table_with_html_as_text(tmp_path):
    result = cnnbench.compare(["lenet5"], **TINY, notes=["<script>alert(1)</script> & more"], out=tmp_path)
    html = result._repr_html_()
    assert html.startswith("<pre") and "lenet5" in html and "final acc" in str(result)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html and "<script>" not in html
    assert "<Comparison" in repr(result) and result.frame() is result.table
    from cnnbench.training.trainer import RunResult

    unmeasured = cnnbench.Run(RunResult("r", tmp_path, "failed: no epoch", {}, []))
    assert repr(unmeasured) == "<Run r failed: no epoch: final test acc -%>" and unmeasured.epochs.empty


def test_nothing_prints_unless_asked(tmp_path, capfd):
    cnnbench.train("lenet5", **TINY, out=tmp_path)
    cnnbench.summary("lenet5", out=tmp_path)
    assert capfd.readouterr() == ("", "")
    cnnbench.train("lenet5", **TINY, seed=1, out=tmp_path, progress=True)
    said = capfd.readouterr()
    assert "epoch 2/2" in said.out + said.err


def test_the_create_model_is_what_commands_build():
    model = cnnbench.create_model("cnn_dropout", dropout=0.3, input_size="3x32x32", seed=0)
    torch.manual_seed(0)
    again = cnnbench.create_model("cnn_dropout", dropout="0.3", input_size=(3, 32, 32))
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}
    assert "vgg16" in cnnbench.list_models("vgg*") and "lenet5" not in cnnbench.list_models("vgg*")


@pytest.mark.slow  # a real Jupyter kernel: a process of its own that imports torch
def test_the_example_notebook_runs_top_to_bottom_in_a_real_kernel(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    notebook = nbformat.read(Path(__file__).parent.parent / "examples" / "from_python.ipynb", as_version=4)
    env_before = os.environ.get("COLUMNS")
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    assert os.environ.get("COLUMNS") == env_before
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("MACs" in h for h in shown) and any(
        "final acc" in h for h in shown
    )  # the summary and the comparison
    assert any("run_id" in h for h in shown)  # runs() as a DataFrame
    assert (tmp_path / "results" / "notebook" / "runs.csv").is_file()
