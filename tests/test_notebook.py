"""notebooks/quickstart.ipynb runs end to end against the simulator, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs_end_to_end():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # fmt: skip
    outputs = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    html = "\n".join(
        str(out.get("data", {}).get("text/html", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "to query" in html and "numbers paid twice: 0" in outputs  # the plan, shown as a table
    assert "Traceback" not in outputs and "Error" not in outputs
    assert "qxt-bars" in html and "正常" in html and "中国移动" in html  # the report's charts, labels as text
    assert "missing from font" not in outputs + html  # no chart drew Chinese without the glyphs
    assert "'正常':" in outputs  # the split
    noise = [str(out.get("text", ""))[:200] for cell in notebook.cells if cell.cell_type == "code"
             for out in cell.get("outputs", []) if out.get("name") == "stderr"]  # fmt: skip
    assert noise == []  # no red stderr block: no warnings, and progress as a widget, not text
