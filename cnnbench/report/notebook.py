"""What a Python result shows in Jupyter and as text: the terminal's own rendering, recorded.

The ``print_*`` functions of :mod:`cnnbench.report.terminal` print to its consoles; here they print to a
recording console instead, exported as HTML (with inline styles: a notebook saved and opened elsewhere
shows the same table) or as plain text. Text in the tables is escaped by rich's export: a variant or a
note holding HTML is shown, never run.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator

WIDTH = 140  # columns of a notebook's output at its usual font: wide tables keep their columns

_PRE = ('<pre style="white-space: pre; overflow-x: auto; line-height: normal; '
        "font-family: Menlo, 'DejaVu Sans Mono', consolas, 'Courier New', monospace\">{code}</pre>")  # fmt: skip


@contextlib.contextmanager
def _recorded() -> Iterator[object]:
    from rich.console import Console

    from cnnbench.report import terminal

    recorder = Console(record=True, file=io.StringIO(), width=WIDTH, force_terminal=True, force_jupyter=False,
                       color_system="truecolor")  # fmt: skip
    saved = terminal.console, terminal.err_console
    terminal.console = terminal.err_console = recorder
    try:
        yield recorder
    finally:
        terminal.console, terminal.err_console = saved


def html_of(render: Callable[[], None]) -> str:
    """What ``render`` prints to the terminal, as an HTML fragment."""
    with _recorded() as recorder:
        render()
    return recorder.export_html(inline_styles=True, code_format=_PRE)  # type: ignore[attr-defined]


def text_of(render: Callable[[], None]) -> str:
    """What ``render`` prints to the terminal, as plain text."""
    with _recorded() as recorder:
        render()
    return recorder.export_text()  # type: ignore[attr-defined]
