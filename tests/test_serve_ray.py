"""``qwen3-rag serve``'s app as a Ray Serve deployment on a local Ray instance: how it scales
past one machine. Its answers equal the in-process engine's."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.serve import ServeSettings, ray_deployment
from qwen3_core.testing import ModelPaths, free_port
from tests.options import CPU

ray = pytest.importorskip("ray", reason="needs the ray extra")
serve = pytest.importorskip("ray.serve", reason="needs ray[serve]")

QUERY = "What is the capital of China?"
KEY = "sk-ray-0123456789"


@pytest.fixture(scope="module")
def ray_serve() -> Iterator[int]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 2**20,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def test_the_app_runs_as_a_ray_serve_deployment(
    ray_serve: int,
    test_models: ModelPaths,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    corpus: list[str],
) -> None:
    application = ray_deployment(
        str(test_models.embedding),
        str(test_models.reranker),
        backend=CPU,
        settings=ServeSettings(api_key=KEY),
        deployment_options={"ray_actor_options": {"num_cpus": 1}},
    )
    serve.run(application, name="qwen3-rag", route_prefix="/")
    url = f"http://127.0.0.1:{ray_serve}"
    headers = {"Authorization": f"Bearer {KEY}"}
    documents = corpus[:6]
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        ranked = client.post("/v2/rerank", json={"query": QUERY, "documents": documents})
        embedded = client.post("/v1/embeddings", json={"input": documents})
        refused = client.post(
            "/v1/embeddings", json={"input": documents}, headers={"Authorization": "Bearer no"}
        )
    assert ranked.status_code == 200, ranked.text
    got = ranked.json()["results"]
    want = reranker.rerank(QUERY, documents)
    assert [row["index"] for row in got] == [hit.index for hit in want]
    np.testing.assert_allclose(
        [row["relevance_score"] for row in got], [hit.score for hit in want], atol=1e-5
    )
    vectors = [row["embedding"] for row in embedded.json()["data"]]
    np.testing.assert_allclose(vectors, embedder.embed_documents(documents), atol=1e-5)
    assert refused.status_code == 401
