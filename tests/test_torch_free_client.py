"""A client of model servers needs no torch: in a virtual environment where `pip install
qwen3-rag` (no extras) put no torch and no transformers, ``import qwen3_core`` and both
engines on ``backend=ServerOptions(...)`` work, and give the scores and vectors that the
transformers backend gives here.

The environment is made by ``make test-client`` (which sets QWEN3_RAG_CLIENT_PYTHON); without
it this test is skipped, unless QWEN3_RAG_REQUIRE_CLIENT=1 (set in CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.testing import ModelPaths
from tests.servers import StandInServer

CLIENT_PYTHON = os.environ.get("QWEN3_RAG_CLIENT_PYTHON")

if not CLIENT_PYTHON:
    if os.environ.get("QWEN3_RAG_REQUIRE_CLIENT") == "1":
        raise RuntimeError("QWEN3_RAG_REQUIRE_CLIENT=1 but QWEN3_RAG_CLIENT_PYTHON is not set")
    pytest.skip("no torch-free environment: run `make test-client`", allow_module_level=True)

DOCUMENTS = ["Beijing is the capital of China.", "Gravity attracts bodies with mass.", ""]
QUERY = "What is the capital of China?"

# Runs in the torch-free environment: prints the results and the heavy modules it imported.
CLIENT = """
import json, sys
from qwen3_core import Qwen3Embedder, Qwen3Reranker, ServerOptions

embedding, reranker, url, query, documents = sys.argv[1:4] + [sys.argv[4], json.loads(sys.argv[5])]
server = ServerOptions(base_url=url)
with Qwen3Embedder(embedding, backend=server) as embedder:
    vectors = embedder.embed_documents(documents).tolist()
    query_vector = embedder.embed_queries([query]).tolist()
with Qwen3Reranker(reranker, backend=server) as rr:
    scores = rr.score(query, documents).tolist()
heavy = sorted(name for name in ("torch", "transformers") if name in sys.modules)
print(json.dumps({"vectors": vectors, "query": query_vector, "scores": scores, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def server(test_models: ModelPaths) -> Iterator[StandInServer]:
    stand_in = StandInServer(test_models.embedding, test_models.reranker).start()
    yield stand_in
    stand_in.stop()


def test_the_client_environment_has_no_torch() -> None:
    assert CLIENT_PYTHON is not None
    found = subprocess.run(
        [
            CLIENT_PYTHON,
            "-c",
            "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('transformers'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.split() == ["None", "None"]


def test_server_client_without_torch_matches_transformers(
    server: StandInServer, test_models: ModelPaths
) -> None:
    assert CLIENT_PYTHON is not None
    run = subprocess.run(
        [
            CLIENT_PYTHON,
            "-c",
            CLIENT,
            str(test_models.embedding),
            str(test_models.reranker),
            server.url,
            QUERY,
            json.dumps(DOCUMENTS),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONWARNINGS": "error"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no warning, no progress bar
    got = json.loads(run.stdout)
    assert got["heavy"] == []

    cpu = TransformersOptions(device="cpu", dtype="float32")
    with Qwen3Embedder(test_models.embedding, backend=cpu) as embedder:
        np.testing.assert_allclose(got["vectors"], embedder.embed_documents(DOCUMENTS), atol=1e-5)
        np.testing.assert_allclose(got["query"], embedder.embed_queries([QUERY]), atol=1e-5)
    with Qwen3Reranker(test_models.reranker, backend=cpu) as rr:
        np.testing.assert_allclose(got["scores"], rr.score(QUERY, DOCUMENTS), atol=1e-5)
