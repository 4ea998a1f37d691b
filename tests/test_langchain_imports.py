"""langchain_qwen3 works with only langchain-core: no llama-index, no langchain-classic or
langchain-community, no vector store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from qwen3_core.testing import ModelPaths

REPO = Path(__file__).resolve().parents[1]

# A None entry in sys.modules makes `import name` raise ImportError, as if not installed.
BLOCKED = ["llama_index", "langchain_classic", "langchain_community", "langchain", "faiss"]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    for name in sys.argv[3:]:
        sys.modules[name] = None
    from langchain_core.cross_encoders import BaseCrossEncoder
    from langchain_core.embeddings import Embeddings

    from langchain_qwen3 import Qwen3CrossEncoder, Qwen3Embeddings, Qwen3Rerank
    from qwen3_core import TransformersOptions

    cpu = TransformersOptions(device="cpu")

    # The embedding model runs (its lazy imports happen on first use); the reranker adapters
    # share this module's imports, so constructing them is enough.
    emb = Qwen3Embeddings(model=sys.argv[1], backend=cpu)
    rerank = Qwen3Rerank(model=sys.argv[2], backend=cpu, top_n=1)
    cross = Qwen3CrossEncoder(model=sys.argv[2], backend=cpu)
    print(json.dumps({
        "dimension": len(emb.embed_query("capital of China?")),
        "empty": [rerank.compress_documents([], "q"), cross.score([])],
        "interfaces": isinstance(emb, Embeddings)
        and issubclass(Qwen3CrossEncoder, BaseCrossEncoder),
        "leaked": sorted(n for n in sys.argv[3:] if sys.modules.get(n) is not None),
    }))
    """
)


def test_imports_and_runs_with_only_langchain_core(test_models: ModelPaths) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(test_models.embedding),
            str(test_models.reranker),
            *BLOCKED,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["dimension"] == 64 and result["empty"] == [[], []]
    assert result["interfaces"] and result["leaked"] == []


def _import_error(script: str, **env: str) -> str:
    """The last line a fresh interpreter prints running ``script``, which must fail."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode != 0, result.stdout
    return result.stderr.strip().splitlines()[-1]


def test_without_langchain_core_the_error_says_what_to_install() -> None:
    line = _import_error("import sys; sys.modules['langchain_core'] = None; import langchain_qwen3")
    assert line == (
        "ImportError: langchain_qwen3 needs langchain-core, which is not installed: run pip "
        'install -e ".[langchain]" in a clone of qwen3-rag'
    )


def test_the_unrelated_langchain_qwen3_distribution_is_refused_by_name(tmp_path: Path) -> None:
    """PyPI's langchain-qwen3 writes the same top-level module: installed beside qwen3-rag,
    its metadata (a real dist-info folder on the path) makes the import fail, saying what to
    uninstall."""
    info = tmp_path / "langchain_qwen3-0.1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: langchain-qwen3\nVersion: 0.1.2\n")
    line = _import_error("import langchain_qwen3", PYTHONPATH=str(tmp_path))
    assert line.startswith("ImportError: langchain-qwen3 0.1.2 is installed: an unrelated")
    assert "pip uninstall langchain-qwen3, then reinstall qwen3-rag" in line
