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
    assert "to query" in outputs and "numbers paid twice: 0" in outputs
    assert "Traceback" not in outputs and "Error" not in outputs
    assert any("image/png" in out.get("data", {}) for cell in notebook.cells for out in cell.get("outputs", [])), (
        "the chart was not drawn"
    )
