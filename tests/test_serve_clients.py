"""``qwen3-rag serve`` against the clients people already use, on loopback, with the tiny
models: every score and vector equals the in-process engine's (within 1e-5)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker, ServerOptions
from qwen3_core.reranker import p_yes
from qwen3_core.serve import create_app
from qwen3_core.testing import ModelPaths
from tests.serving import RunningServer

QUERY = "What is the capital of China?"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def server(embedder: Qwen3Embedder, reranker: Qwen3Reranker) -> Iterator[RunningServer]:
    with RunningServer(create_app(embedder, reranker)) as running:
        yield running


@pytest.fixture(scope="module")
def documents(corpus: list[str]) -> list[str]:
    return corpus[:8]


def expected_ranking(reranker: Qwen3Reranker, documents: list[str]) -> list[tuple[int, float]]:
    return [(hit.index, hit.score) for hit in reranker.rerank(QUERY, documents)]


def assert_ranking(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=TOLERANCE)


def test_openai_sdk_embeds_documents_and_marked_queries(
    server: RunningServer, embedder: Qwen3Embedder, documents: list[str]
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    # Left to itself the SDK asks for base64 and decodes it; float is asked for explicitly.
    for encoding in ({}, {"encoding_format": "float"}):
        answer = client.embeddings.create(model="qwen3-embedding", input=documents, **encoding)
        vectors = np.array([row.embedding for row in answer.data])
        np.testing.assert_allclose(vectors, embedder.embed_documents(documents), atol=TOLERANCE)
        assert answer.usage.total_tokens > len(documents)
    raw = httpx.post(
        server.url + "/v1/embeddings", json={"input": documents[:1], "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, embedder.embed_documents(documents[:1])[0], atol=TOLERANCE)
    queries = embedder.embed_queries(documents[:2])
    by_field = client.embeddings.create(
        model="qwen3-embedding", input=documents[:2], extra_body={"input_type": "query"}
    )
    by_name = client.embeddings.create(model="qwen3-embedding:query", input=documents[:2])
    for answer in (by_field, by_name):
        np.testing.assert_allclose([row.embedding for row in answer.data], queries, atol=TOLERANCE)
    cut = client.embeddings.create(model="m", input=documents[:2], dimensions=16)
    np.testing.assert_allclose(
        [row.embedding for row in cut.data],
        Qwen3Embedder(embedder.model_path, backend=embedder.options, dimensions=16).embed_documents(
            documents[:2]
        ),
        atol=TOLERANCE,
    )
    listed = client.models.list()
    assert [model.id for model in listed.data] == [
        str(embedder.model_path),
        str(server.app.state.service.reranker.model_path),
    ]


def test_langchain_openai_embeddings(
    server: RunningServer, embedder: Qwen3Embedder, documents: list[str]
) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    settings = {"base_url": server.url + "/v1", "api_key": "unused"}
    documents_client = langchain_openai.OpenAIEmbeddings(
        model="qwen3-embedding", check_embedding_ctx_length=False, **settings
    )
    queries_client = langchain_openai.OpenAIEmbeddings(
        model="qwen3-embedding:query", check_embedding_ctx_length=False, **settings
    )
    np.testing.assert_allclose(
        documents_client.embed_documents(documents),
        embedder.embed_documents(documents),
        atol=TOLERANCE,
    )
    np.testing.assert_allclose(
        queries_client.embed_query(QUERY), embedder.embed_queries([QUERY])[0], atol=TOLERANCE
    )


def test_llamaindex_openai_like_embedding(
    server: RunningServer, embedder: Qwen3Embedder, documents: list[str]
) -> None:
    openai_like = pytest.importorskip("llama_index.embeddings.openai_like")
    embedding = openai_like.OpenAILikeEmbedding(
        model_name="qwen3-embedding", api_base=server.url + "/v1", api_key="unused"
    )
    np.testing.assert_allclose(
        embedding.get_text_embedding_batch(documents),
        embedder.embed_documents(documents),
        atol=TOLERANCE,
    )


def test_cohere_sdk_reranks_and_embeds(
    server: RunningServer, embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str]
) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(base_url=server.url, api_key="unused")
    answer = client.rerank(model="qwen3-reranker", query=QUERY, documents=documents, top_n=5)
    want = expected_ranking(reranker, documents)[:5]
    assert_ranking([(r.index, r.relevance_score) for r in answer.results], want)
    # Our extras ride along in fields the SDK keeps but does not know.
    log_odds = reranker.logits(QUERY, documents)
    extra = answer.results[0].model_extra or {}
    assert extra["log_odds"] == pytest.approx(float(log_odds[want[0][0]]), abs=TOLERANCE)
    assert extra["span"] == [0, len(documents[want[0][0]])]
    embedded = client.embed(
        model="qwen3-embedding",
        texts=documents[:3],
        input_type="search_document",
        embedding_types=["float"],
    )
    np.testing.assert_allclose(
        embedded.embeddings.float_, embedder.embed_documents(documents[:3]), atol=TOLERANCE
    )
    queried = client.embed(
        model="qwen3-embedding", texts=[QUERY], input_type="search_query", embedding_types=["float"]
    )
    np.testing.assert_allclose(
        queried.embeddings.float_, embedder.embed_queries([QUERY]), atol=TOLERANCE
    )


def test_langchain_cohere_rerank(
    server: RunningServer, reranker: Qwen3Reranker, documents: list[str]
) -> None:
    langchain_cohere = pytest.importorskip("langchain_cohere")
    compressor = langchain_cohere.CohereRerank(
        model="qwen3-reranker", base_url=server.url, cohere_api_key="unused", top_n=3
    )
    got = compressor.rerank(documents, QUERY)
    assert_ranking(
        [(row["index"], row["relevance_score"]) for row in got],
        expected_ranking(reranker, documents)[:3],
    )


def test_llamaindex_cohere_rerank(
    server: RunningServer, reranker: Qwen3Reranker, documents: list[str]
) -> None:
    cohere_rerank = pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    from llama_index.core.schema import NodeWithScore, TextNode

    postprocessor = cohere_rerank.CohereRerank(
        model="qwen3-reranker", base_url=server.url, api_key="unused", top_n=3
    )
    nodes = [
        NodeWithScore(node=TextNode(text=text, id_=str(i))) for i, text in enumerate(documents)
    ]
    ranked = postprocessor.postprocess_nodes(nodes, query_str=QUERY)
    assert_ranking(
        [(int(hit.node.node_id), float(hit.score or 0.0)) for hit in ranked],
        expected_ranking(reranker, documents)[:3],
    )


def test_tei_endpoints(
    server: RunningServer, embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str]
) -> None:
    raw = httpx.post(
        server.url + "/rerank",
        json={"query": QUERY, "texts": documents, "raw_scores": True, "return_text": True},
    ).json()
    log_odds = reranker.logits(QUERY, documents)
    assert [row["index"] for row in raw] == [i for i, _ in expected_ranking(reranker, documents)]
    np.testing.assert_allclose(
        [row["score"] for row in raw], log_odds[[row["index"] for row in raw]], atol=TOLERANCE
    )
    assert [row["text"] for row in raw] == [documents[row["index"]] for row in raw]
    scored = httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": documents}).json()
    np.testing.assert_allclose(
        [row["score"] for row in scored],
        p_yes(log_odds)[[row["index"] for row in scored]],
        atol=TOLERANCE,
    )
    vectors = httpx.post(server.url + "/embed", json={"inputs": documents}).json()
    np.testing.assert_allclose(vectors, embedder.embed_documents(documents), atol=TOLERANCE)
    query = httpx.post(server.url + "/embed", json={"inputs": QUERY, "prompt_name": "query"})
    np.testing.assert_allclose(query.json(), embedder.embed_queries([QUERY]), atol=TOLERANCE)


def test_jina_style_documents_and_our_extras(
    server: RunningServer, reranker: Qwen3Reranker, documents: list[str]
) -> None:
    """Documents as {text} objects; a per-request instruction; long documents in windows."""
    long_document = " ".join(documents)
    body = {
        "query": QUERY,
        "documents": [{"text": text} for text in [*documents[:2], long_document]],
        "return_documents": True,
        "instruction": "Find the passage that names a city",
        "long_documents": "chunk",
        "max_tokens_per_doc": 24,
    }
    answer = httpx.post(server.url + "/v1/rerank", json=body).json()
    want = reranker.rerank(
        QUERY,
        [*documents[:2], long_document],
        instruction=body["instruction"],
        long_documents="chunk",
        max_document_tokens=24,
    )
    got = answer["results"]
    assert [row["index"] for row in got] == [hit.index for hit in want]
    np.testing.assert_allclose(
        [row["log_odds"] for row in got], [hit.logit for hit in want], atol=TOLERANCE
    )
    assert [tuple(row["span"]) for row in got] == [hit.span for hit in want]
    assert [row["document"]["text"] for row in got] == [hit.document for hit in want]


def test_our_server_client_and_adapters(
    server: RunningServer,
    test_models: ModelPaths,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    documents: list[str],
) -> None:
    """backend=ServerOptions talks to this server as to vLLM's (token ids to /v1/embeddings
    and /classify), and so do the adapters built on it."""
    options = ServerOptions(base_url=server.url)
    with Qwen3Embedder(test_models.embedding, backend=options) as remote:
        np.testing.assert_allclose(
            remote.embed_documents(documents), embedder.embed_documents(documents), atol=TOLERANCE
        )
        np.testing.assert_allclose(
            asyncio.run(remote.aembed_queries([QUERY])),
            embedder.embed_queries([QUERY]),
            atol=TOLERANCE,
        )
    with Qwen3Reranker(test_models.reranker, backend=options) as remote_reranker:
        np.testing.assert_allclose(
            remote_reranker.logits(QUERY, documents),
            reranker.logits(QUERY, documents),
            atol=TOLERANCE,
        )
    from langchain_qwen3 import Qwen3Embeddings

    adapter = Qwen3Embeddings(model=str(test_models.embedding), backend=options)
    np.testing.assert_allclose(
        adapter.embed_query(QUERY), embedder.embed_queries([QUERY])[0], atol=TOLERANCE
    )
