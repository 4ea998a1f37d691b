"""docs/notebooks/langchain_two_stage.ipynb runs top to bottom on the tiny models."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from qwen3_core.testing import ModelPaths

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "notebooks" / "langchain_two_stage.ipynb"


def test_notebook_runs(
    test_models: ModelPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # Stored without outputs; the first code cell holds the switch to the real models.
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "USE_TINY_MODELS = True" in code[0].source
    assert "Qwen/Qwen3-Embedding-0.6B" in code[0].source
    # The kernel inherits the environment, so it finds the models the fixture built in the
    # same cache folder; whatever it puts in temp lands in tmp_path.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=120,  # per cell
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    printed = "".join(
        output.get("text", "") for cell in code for output in cell.outputs if output.get("text")
    )
    assert str(test_models.embedding) in printed  # it used the fixture's models
    assert printed.count("doc-") >= 3  # the hits it printed
    assert not list(tmp_path.glob("qwen3-faiss-*"))  # its last cell removed the store's folder
