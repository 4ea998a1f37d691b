"""docs/notebooks/multimodal_rag.ipynb runs top to bottom on the tiny Qwen3-VL models."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from qwen3_core.testing import ModelPaths, build_vl_test_models

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "multimodal_rag.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    # The real models are one line away from the tiny ones.
    first = code[0].source
    assert "USE_TINY_MODELS = True" in first
    assert "Qwen/Qwen3-VL-Embedding-2B" in first and "Qwen/Qwen3-VL-Reranker-2B" in first


@pytest.mark.timeout(300)
def test_notebook_runs_on_the_tiny_models(
    test_models: ModelPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this environment: it reuses the suite's models, fetches nothing,
    # and whatever it puts in temp lands in tmp_path.
    build_vl_test_models()
    monkeypatch.setenv("QWEN3_RAG_TEST_MODELS", str(test_models.embedding.parents[1]))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=180,  # per cell
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on failure
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    text = "\n".join(output.get("text", "") for output in outputs)
    # Nothing of ours on stderr: no warning, no progress bar. (tqdm says once, on importing
    # LlamaIndex, that the kernel has no ipywidgets: not ours, and not about this notebook.)
    stderr = [
        output["text"]
        for output in outputs
        if output.get("name") == "stderr" and "IProgress not found" not in output["text"]
    ]
    assert not stderr, stderr
    assert "loaded at construction: False" in text
    # Texts and images were reranked together: both kinds among the candidates' rows.
    assert re.search(r"TextNode .*\n", text) and re.search(r"ImageNode .*\.png", text)
    assert len(re.findall(r"P\(yes\)=0\.\d{3}", text)) >= 3
