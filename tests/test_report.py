"""report.html and `cnnbench report`: what the page holds (against tidy.csv), that it needs nothing from the
network, that hostile names stay text, that its command makes the comparison again; TensorBoard logs read
back by TensorBoard's own reader. The browser tests open the page in a real headless Chromium."""

import base64
import io
import json
import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli, compare_tiny, one_line_error, unavailable

pytestmark = pytest.mark.xdist_group("report")  # its fixture trains once, in one worker

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_NOTE = '</table><script>alert(2)</script> & "quotes"'
OWN_MODEL = """
import torch.nn as nn


def make(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, num_classes))
"""


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """Two variants, two seeds, one of them an own-model file whose name is HTML, and a hostile note."""
    root = tmp_path_factory.mktemp("report")
    (root / f"{HOSTILE}.py").write_text(OWN_MODEL)
    done = compare_tiny(root / "out", "lenet5", f"{root / HOSTILE}.py:make", "--seeds", "2", "--name", "r",
                        "--note", HOSTILE_NOTE, "--tensorboard", str(root / "tb"))  # fmt: skip
    assert done.exit_code == 0, done.output
    return root, root / "out" / "compare" / "r"


def test_every_comparison_writes_a_report_that_needs_no_network(comparison):
    _root, folder = comparison
    page = (folder / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "default-src 'none'; img-src data:" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)  # nothing fetched
    assert "@import" not in page and "url(" not in page
    figures = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    stems = sorted(p.stem for p in folder.glob("*.svg"))
    assert len(figures) == len(stems) == 5  # accuracy per epoch, vs MACs, params, time; epoch time
    for data in figures:
        assert base64.b64decode(data).lstrip().startswith(b"<?xml")


def test_hostile_names_and_notes_are_text(comparison):
    _root, folder = comparison
    page = (folder / "report.html").read_text()
    assert HOSTILE not in page and "<script>alert" not in page  # never markup
    assert page.count("<script>") == 1  # the sorting script alone
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;/table&gt;&lt;script&gt;alert(2)&lt;/script&gt; &amp; &quot;quotes&quot;" in page


def test_the_reports_numbers_are_tidy_csvs_at_the_printed_precision(comparison):
    _root, folder = comparison
    tidy = pd.read_csv(folder / "tidy.csv")
    tables = pd.read_html(io.StringIO((folder / "report.html").read_text()))  # lxml's reading of the page
    runs = next(t for t in tables if "run id" in t.columns)
    assert len(runs) == len(tidy) == 4
    for (_, shown), (_, row) in zip(runs.iterrows(), tidy.iterrows(), strict=True):
        assert (shown["variant"], int(shown["seed"]), shown["run id"]) == (row.variant, row.seed, row.run_id)
        assert (
            f"{shown['final test acc (%)']:.2f}" == f"{row.final_test_acc:.2f}"
        )  # lxml reads 100.00 as 100.0
        assert f"{shown['epoch time (s, median)']:.3f}" == f"{row.median_epoch_s:.3f}"
    results = next(t for t in tables if "Δ final acc (pp, 95% CI)" in t.columns)
    for variant, group in tidy.groupby("variant", sort=False):
        mean = results.loc[results.variant == variant, "final test acc (%)"].item()
        assert mean.startswith(f"{group.final_test_acc.mean():.2f} ± {group.final_test_acc.std():.2f}")


def test_the_reports_command_makes_the_comparison_again(comparison):
    root, folder = comparison
    page = (folder / "report.html").read_text()
    command = re.search(r"<h2>Reproduce</h2><pre>(.*?)</pre>", page).group(1)
    import html

    argv = shlex.split(html.unescape(command))
    assert argv[:2] == ["cnnbench", "compare"] and "--tensorboard" in argv and HOSTILE_NOTE in argv
    again = cli(*argv[1:], "--name", "again")  # the last --name wins: beside the first, from the same runs
    assert again.exit_code == 0, again.output
    assert again.output.count("reused run") == 4  # every run's conditions identical: none trained again
    assert (
        pd.read_csv(folder.parent / "again" / "tidy.csv").run_id.tolist()
        == pd.read_csv(folder / "tidy.csv").run_id.tolist()
    )


def test_tensorboards_reader_reads_every_scalar_and_the_hparams(comparison):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    root, folder = comparison
    tidy, epochs = pd.read_csv(folder / "tidy.csv"), pd.read_csv(folder / "epochs.csv")
    runs = sorted(p.parent for p in (root / "tb").glob("*/*/cnnbench_run_id.txt"))
    folder_of = {v.replace("/", "_"): v for v in tidy.variant}  # a file's path: one folder, not many
    assert [f"{folder_of[p.parent.name]}/{p.name}" for p in runs] == sorted(
        f"{v}/seed{s}" for v, s in zip(tidy.variant, tidy.seed, strict=True)
    )
    for run in runs:
        variant, seed = folder_of[run.parent.name], int(run.name.removeprefix("seed"))
        reader = EventAccumulator(str(run))
        reader.Reload()
        mine = epochs[(epochs.variant == variant) & (epochs.seed == seed)]
        for name in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s"):
            logged = reader.Scalars(name)
            assert [s.step for s in logged] == mine.epoch.tolist(), name
            assert [s.value for s in logged] == pytest.approx(mine[name].tolist(), rel=1e-6), name  # float32
        row = tidy[(tidy.variant == variant) & (tidy.seed == seed)].iloc[0]
        assert reader.Scalars("final/final_test_acc")[0].value == pytest.approx(row.final_test_acc, rel=1e-6)
        content = reader.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert hparams["seed"].number_value == seed and hparams["epochs"].number_value == 2
        assert hparams["status"].string_value == row.status and hparams["dataset"].string_value == "synthetic"
        assert (run / "cnnbench_run_id.txt").read_text().strip() == row.run_id


def test_tensorboard_without_its_package_is_one_line_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    result = compare_tiny(tmp_path, "lenet5", "--tensorboard", str(tmp_path / "tb"))
    one_line_error(
        result, "expected the tensorboard package for --tensorboard", 'pip install "cnnbench[tensorboard]"'
    )
    assert not (tmp_path / "runs.csv").exists() and not (tmp_path / "tb").exists()


def test_report_command_renders_a_comparison_a_run_and_a_profile(comparison, tmp_path):
    _root, folder = comparison
    copy = tmp_path / "copy" / folder.name  # its name is the comparison's
    shutil.copytree(folder, copy)
    (copy / "report.html").unlink()
    done = cli("report", str(copy))
    assert done.exit_code == 0 and done.output.strip() == f"report: {copy / 'report.html'}"

    def shown(page):  # all but the command, whose --out is where the comparison's store now is
        return (page / "report.html").read_text().split("<h2>Reproduce</h2>")[0]

    assert shown(copy) == shown(folder)

    run_dir = next(p for p in (folder.parent.parent / "runs").iterdir() if p.name.startswith("lenet5-"))
    done = cli("report", str(run_dir), "--output", str(tmp_path / "run.html"))
    assert done.exit_code == 0, done.output
    page = (tmp_path / "run.html").read_text()
    config = json.loads((run_dir / "config.json").read_text())
    assert (
        f"<h1>{run_dir.name} " in page
        and "cnnbench train lenet5" in page
        and config["conditions_hash"] in page
    )

    profiled = cli("profile", "lenet5", "-i", "3x16x16", "--batch-sizes", "2", "--mode", "infer", "--device", "cpu",
                   "--warmup", "1", "--iters", "2", "--out", str(tmp_path), "-f", "json")  # fmt: skip
    assert profiled.exit_code == 0, profiled.output
    done = cli("report", str(tmp_path / "profile.csv"))
    assert done.exit_code == 0 and (tmp_path / "profile.html").is_file()
    shown = pd.read_html(io.StringIO((tmp_path / "profile.html").read_text()))[0]
    assert shown.model.tolist() == ["lenet5"] and shown.batch_size.tolist() == [2]

    one_line_error(
        cli("report", str(tmp_path / "nothing")), "expected a comparison folder (tidy.csv), a run's folder"
    )


def test_compare_from_adds_a_report_to_a_comparison_made_before_reports(comparison, tmp_path):
    _root, folder = comparison
    copy = tmp_path / "old"
    shutil.copytree(folder, copy)
    (copy / "report.html").unlink()
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    assert cli("compare", "--from", str(copy)).exit_code == 0
    assert (copy / "report.html").is_file()
    assert {
        p.name: p.read_bytes() for p in copy.iterdir() if p.name != "report.html"
    } == before  # nothing else


# --- a real browser ----------------------------------------------------------------------------------------

CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if CHROMEDRIVER is None:
        unavailable("chromium-driver is not installed (.ci/run installs it)", "CNNBENCH_REQUIRE_BROWSER")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})  # fmt: skip
    yield driver
    driver.quit()


def _open(driver, page: Path, width: int):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_window_size(width, 1000)
    driver.get_log("performance"), driver.get_log("browser")  # what an earlier page left
    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    requests = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    fetched = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    failed = [m["params"] for m in requests if m["method"] == "Network.loadingFailed"]
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return fetched, failed, errors


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 390])
def test_a_real_browser_shows_the_report_offline_with_no_error(browser, comparison, width):
    from PIL import Image
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _root, folder = comparison
    fetched, failed, errors = _open(browser, folder / "report.html", width)
    assert (
        [u for u in fetched if not u.startswith(("file:", "data:"))] == [] and failed == [] and errors == []
    )
    with pytest.raises(NoAlertPresentException):  # neither the name's onerror nor the note's script ran
        browser.switch_to.alert  # noqa: B018
    assert browser.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
    text = browser.find_element(By.TAG_NAME, "body").text
    assert HOSTILE in text and "</table><script>alert(2)</script>" in text
    # A phone's width scrolls the tables alone, never the page.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L")
    assert shot.getextrema()[0] < 80 and len(shot.getcolors(1 << 16)) > 20  # text and figures, not blank

    tidy = pd.read_csv(folder / "tidy.csv")
    runs = browser.find_elements(By.XPATH, "//table[caption[contains(., 'tidy.csv')]]/tbody/tr")
    cells = [[td.get_attribute("textContent") for td in row.find_elements(By.TAG_NAME, "td")] for row in runs]
    assert [(c[0], c[1], c[3]) for c in cells] == [
        (r.variant, str(r.seed), f"{r.final_test_acc:.2f}") for r in tidy.itertuples()
    ]


@pytest.mark.slow
def test_clicking_a_heading_sorts_the_table_both_ways(browser, comparison):
    from selenium.webdriver.common.by import By

    _root, folder = comparison
    _open(browser, folder / "report.html", 1280)
    table = browser.find_element(By.XPATH, "//table[caption[contains(., 'tidy.csv')]]")
    heading = table.find_element(By.XPATH, ".//th[contains(., 'final test acc (%)')]/button")

    def column(index):
        return [row.find_elements(By.TAG_NAME, "td")[index].get_attribute("textContent")
                for row in table.find_elements(By.XPATH, "./tbody/tr")]  # fmt: skip

    heading.click()
    ascending = [float(v) for v in column(3)]
    assert ascending == sorted(ascending) and len(ascending) == 4
    heading.click()
    assert [float(v) for v in column(3)] == sorted(ascending, reverse=True)
    assert table.find_element(By.XPATH, ".//th[@aria-sort]").get_attribute("aria-sort") == "descending"


@pytest.mark.slow
def test_print_to_pdf_gives_a4_pages_holding_every_variant(browser, comparison):
    from pypdf import PdfReader
    from selenium.webdriver.common.print_page_options import PrintOptions

    _root, folder = comparison
    _open(browser, folder / "report.html", 1280)
    options = PrintOptions()
    options.page_width, options.page_height = 21.0, 29.7
    pdf = PdfReader(io.BytesIO(base64.b64decode(browser.print_page(options))))
    assert len(pdf.pages) >= 2
    box = pdf.pages[0].mediabox
    assert abs(float(box.width) - 595.3) < 2 and abs(float(box.height) - 841.9) < 2  # A4 in points
    text = " ".join(page.extract_text() for page in pdf.pages)
    flat = re.sub(r"\s+", "", text)
    for variant in pd.read_csv(folder / "tidy.csv").variant.unique():
        assert re.sub(r"\s+", "", variant) in flat, variant
