"""A comparison's folder and files: names that are plain folder names and never shared, --force to
replace one, --from that validates what it reads before it writes, a failed comparison's exit code, and
Markdown and LaTeX cells that hostile names and notes cannot break."""

import functools
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import cli, compare_tiny, one_line_error, unavailable

compare = functools.partial(compare_tiny, epochs=1, batch_size=64, synthetic_size=128)


@pytest.mark.slow  # trains several comparisons or runs: seconds each
def test_two_comparisons_never_share_a_folder(tmp_path):
    assert compare(tmp_path, "lenet").exit_code == 0
    assert compare(tmp_path, "lenet", "--lr", "0.01").exit_code == 0
    assert compare(tmp_path, "lenet", "--lr", "0.01").exit_code == 0  # the same comparison: its own folder
    folders = sorted(p.name for p in (tmp_path / "compare").iterdir())
    assert len(folders) == 2 and all(f.startswith("lenet5-") for f in folders)


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", ".."])
def test_compare_name_is_a_plain_folder_name(tmp_path, name):
    one_line_error(compare(tmp_path, "lenet", "--name", name), "expected --name as a plain folder name")


@pytest.mark.slow  # trains several comparisons or runs: seconds each
def test_reusing_a_name_asks_for_force(tmp_path):
    assert compare(tmp_path, "lenet", "--name", "n").exit_code == 0
    before = (tmp_path / "compare" / "n" / "tidy.csv").read_text()
    one_line_error(compare(tmp_path, "cnn_dropout", "--name", "n"), "--force replaces it")
    assert (tmp_path / "compare" / "n" / "tidy.csv").read_text() == before
    assert compare(tmp_path, "cnn_dropout", "--name", "n", "--force").exit_code == 0
    assert "cnn_dropout" in (tmp_path / "compare" / "n" / "tidy.csv").read_text()


def test_from_validates_tidy_before_writing_and_a_failed_render_keeps_the_old_outputs(
    tmp_path,
):
    assert compare(tmp_path, "lenet", "--name", "n").exit_code == 0
    folder = tmp_path / "compare" / "n"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    tidy = folder / "tidy.csv"
    header, first, *rest = before["tidy.csv"].decode().splitlines(keepends=True)
    tidy.write_text(header + first.replace(",", ",extra,", 1) + "".join(rest))
    one_line_error(cli("compare", "--from", folder), "tidy.csv")
    tidy.write_bytes(before["tidy.csv"])
    frame = pd.read_csv(tidy)
    frame["best_test_acc"] = frame["best_test_acc"].astype(object)
    frame.loc[0, "best_test_acc"] = "eighty"
    frame.to_csv(tidy, index=False)
    one_line_error(cli("compare", "--from", folder), "expected numbers in column best_test_acc")
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "tidy.csv"}
    assert after == {k: v for k, v in before.items() if k != "tidy.csv"}


def test_a_compare_in_which_every_variant_failed_exits_non_zero(tmp_path):
    result = compare(tmp_path, "lenet:pool=median", "lenet:pool=mode")
    assert result.exit_code == 1
    assert "failed: bad value for option pool" in result.output


def test_markdown_and_latex_cells_are_escaped(tmp_path):
    note = r"copy #2 | 50% of A&B {x_y} \ end"
    assert compare(tmp_path, "cnn_dropout:dropout=0.5", "--name", "n", "--note", note).exit_code == 0
    folder = tmp_path / "compare" / "n"
    md = (folder / "table.md").read_text()
    assert r"copy \#2 \| 50% of A&B {x\_y} \\ end" in md
    assert r"| cnn\_dropout:dropout=0.5 |" in md
    tex = (folder / "table.tex").read_text()
    assert r"cnn\_dropout:dropout=0.5 &" in tex
    assert r"copy \#2 | 50\% of A\&B \{x\_y\} \textbackslash{} end" in tex
    body = tex.split(r"\begin{tabular}")[1]
    assert "%" not in body.replace(r"\%", "") and "_" not in body.replace(r"\_", "")


def test_the_latex_table_compiles_with_hostile_notes(tmp_path):
    if not shutil.which("pdflatex"):
        unavailable("no pdflatex (apt-get install texlive-latex-recommended; .ci/run installs it)",
                    "CNNBENCH_REQUIRE_LATEX")  # fmt: skip
    note = r"copy #2 | 50% of A&B {x_y} \ end ~ ^ $"
    # two seeds: the table carries the Δ column and ± cells too
    result = compare(tmp_path, "cnn_dropout:dropout=0.5,0.3", "--seeds", "2", "--name", "n", "--note", note)
    assert result.exit_code == 0, result.output
    assert "$\\Delta$" in (tmp_path / "compare" / "n" / "table.tex").read_text()
    doc = tmp_path / "doc.tex"
    table = tmp_path / "compare" / "n" / "table.tex"
    doc.write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\usepackage[landscape,margin=0.2in]{geometry}"
        f"\\begin{{document}}\\tiny\\input{{{table}}}\\end{{document}}\n"
    )
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
