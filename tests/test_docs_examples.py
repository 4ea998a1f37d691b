"""Every code block of README.md and docs/*.md runs as written, on the tiny offline models.

The blocks of one file run in order in a fresh Python process (``tests/doc_blocks.py``):
Python blocks in one namespace, shell blocks in bash, in an empty working folder, with
``TMPDIR`` in a folder removed afterwards. The model is the one thing that differs from a
reader's run: the hub ids the blocks name (and the adapters' default models) resolve through
huggingface_hub's own cache, which ``HF_HUB_CACHE`` points at a cache holding the tiny models
as the snapshots of ``Qwen/Qwen3-Embedding-*`` and ``Qwen/Qwen3-Reranker-*`` (and the tiny
Qwen3-VL models as those of ``Qwen/Qwen3-VL-Embedding-*`` and ``Qwen/Qwen3-VL-Reranker-*``), with
``HF_HUB_OFFLINE=1``. Nothing in a block is rewritten.

A block that cannot run here (an install, a GPU, vLLM, remote servers) carries
``<!-- not run: REASON -->`` on the line above it, which readers of the rendered page do not
see. Any other block that raises, exits non-zero or makes qwen3-rag warn fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from qwen3_core.testing import ModelPaths, build_vl_test_models, models_cache_folder
from tests.doc_blocks import code_blocks, write_blocks

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "doc_blocks.py"
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
HUB_IDS = [
    f"Qwen/Qwen3-{kind}-{size}"
    for kind in ("Embedding", "Reranker")
    for size in ("0.6B", "4B", "8B")
]
VL_HUB_IDS = [
    f"Qwen/Qwen3-VL-{kind}-{size}" for kind in ("Embedding", "Reranker") for size in ("2B", "8B")
]
COMMIT = "1" * 40

pytestmark = pytest.mark.timeout(1200)


def lay_hub_cache(cache: Path, models: ModelPaths) -> None:
    """A huggingface_hub cache as it keeps a download (models--org--name/snapshots/<commit>/,
    refs/main naming the commit), the snapshot files linking to the tiny model's."""
    vl = build_vl_test_models(models_cache_folder())
    for repo_id in HUB_IDS + VL_HUB_IDS:
        if repo_id in VL_HUB_IDS:
            source = vl.embedding if "Embedding" in repo_id else vl.reranker
        else:
            source = models.embedding if "Embedding" in repo_id else models.reranker
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / COMMIT
        snapshot.mkdir(parents=True)
        for file in source.iterdir():
            (snapshot / file.name).symlink_to(file)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(COMMIT)


def test_blocks_are_found_and_markers_give_a_reason() -> None:
    blocks = [block for document in DOCUMENTS for block in code_blocks(document, REPO)]
    assert any(block.where.startswith("README.md:") for block in blocks)
    assert {block.language for block in blocks} == {"python", "bash"}
    assert all(block.not_run != "" for block in blocks), "say why a block is not run"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_code_blocks_run(document: Path, test_models: ModelPaths) -> None:
    blocks = code_blocks(document, REPO)
    to_run = [block for block in blocks if block.not_run is None]
    if not to_run:
        pytest.skip(f"no block to run ({len(blocks)} marked not run)")
    # A short path: Ray's sockets go under TMPDIR, and a socket path has at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="qwen3-docs-", ignore_cleanup_errors=True) as name:
        scratch = Path(name)
        for folder in ("hub", "work", "tmp", "cache"):
            (scratch / folder).mkdir()
        lay_hub_cache(scratch / "hub", test_models)
        write_blocks(to_run, scratch / "blocks.json")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "QWEN3_RAG_"))},
            "HF_HUB_CACHE": str(scratch / "hub"),
            "HF_HUB_OFFLINE": "1",
            "QWEN3_RAG_TEST_MODELS": str(models_cache_folder()),
            "TMPDIR": str(scratch / "tmp"),
            "XDG_CACHE_HOME": str(scratch / "cache"),  # what the blocks cache (OpenVINO's...)
            "TOKENIZERS_PARALLELISM": "false",
            # `python`, `qwen3-rag` in shell blocks: this environment's.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        }
        result = subprocess.run(
            [sys.executable, str(RUNNER), str(scratch / "blocks.json")],
            cwd=scratch / "work",
            env=env,
            capture_output=True,
            text=True,
            timeout=1100,
        )
    assert result.returncode == 0, f"{result.stdout[-8000:]}\n{result.stderr[-8000:]}"
