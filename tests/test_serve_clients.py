"""``qwen3-rag serve`` against the clients people already use, on loopback, with the tiny
models: every score and vector equals the in-process engine's (within 1e-5)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from pathlib import PurePath

import httpx
import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker, ServerOptions
from qwen3_core.reranker import p_yes
from qwen3_core.serve import create_app
from qwen3_core.testing import ModelPaths
from tests.options import CPU
from tests.serving import RunningServer

QUERY = "What is the capital of China?"
TOLERANCE = 1e-5
# The names the clients send: the server serves its models under them.
EMBEDDING = "qwen3-embedding"
RERANKER = "qwen3-reranker"


@pytest.fixture(scope="module")
def server(embedder: Qwen3Embedder, reranker: Qwen3Reranker) -> Iterator[RunningServer]:
    app = create_app(
        embedder, reranker, embedding_model_name=EMBEDDING, reranker_model_name=RERANKER
    )
    with RunningServer(app) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """The HTTP client given to the SDKs under test, closed after each test: a client an SDK
    makes for itself is never closed, and leaves its sockets to the garbage collector."""
    with httpx.Client(timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def documents(corpus: list[str]) -> list[str]:
    return corpus[:8]


def expected_ranking(reranker: Qwen3Reranker, documents: list[str]) -> list[tuple[int, float]]:
    return [(hit.index, hit.score) for hit in reranker.rerank(QUERY, documents)]


def assert_ranking(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=TOLERANCE)


def test_openai_sdk_embeds_documents_and_marked_queries(
    server: RunningServer, embedder: Qwen3Embedder, documents: list[str], http: httpx.Client
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", http_client=http)
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
    cut = client.embeddings.create(model=EMBEDDING, input=documents[:2], dimensions=16)
    np.testing.assert_allclose(
        [row.embedding for row in cut.data],
        Qwen3Embedder(embedder.model_path, backend=embedder.options, dimensions=16).embed_documents(
            documents[:2]
        ),
        atol=TOLERANCE,
    )


def test_langchain_openai_embeddings(
    server: RunningServer, embedder: Qwen3Embedder, documents: list[str], http: httpx.Client
) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    settings = {"base_url": server.url + "/v1", "api_key": "unused", "http_client": http}
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
    server: RunningServer, embedder: Qwen3Embedder, documents: list[str], http: httpx.Client
) -> None:
    openai_like = pytest.importorskip("llama_index.embeddings.openai_like")
    embedding = openai_like.OpenAILikeEmbedding(
        model_name=EMBEDDING, api_base=server.url + "/v1", api_key="unused", http_client=http
    )
    np.testing.assert_allclose(
        embedding.get_text_embedding_batch(documents),
        embedder.embed_documents(documents),
        atol=TOLERANCE,
    )


def test_cohere_sdk_reranks_and_embeds(
    server: RunningServer,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    documents: list[str],
    http: httpx.Client,
) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(base_url=server.url, api_key="unused", httpx_client=http)
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
    server: RunningServer, reranker: Qwen3Reranker, documents: list[str], http: httpx.Client
) -> None:
    langchain_cohere = pytest.importorskip("langchain_cohere")
    import cohere

    client = cohere.ClientV2(base_url=server.url, api_key="unused", httpx_client=http)
    compressor = langchain_cohere.CohereRerank(model=RERANKER, client=client, top_n=3)
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
        model=RERANKER, base_url=server.url, api_key="unused", top_n=3
    )
    nodes = [
        NodeWithScore(node=TextNode(text=text, id_=str(i))) for i, text in enumerate(documents)
    ]
    # It takes no client of ours: its own Cohere client is closed (a context manager) here.
    with postprocessor._client:
        ranked = postprocessor.postprocess_nodes(nodes, query_str=QUERY)
    assert_ranking(
        [(int(hit.node.node_id), float(hit.score or 0.0)) for hit in ranked],
        expected_ranking(reranker, documents)[:3],
    )


def test_llamaindex_tei_rerank(
    server: RunningServer, reranker: Qwen3Reranker, documents: list[str]
) -> None:
    tei_rerank = pytest.importorskip("llama_index.postprocessor.tei_rerank")
    from llama_index.core.schema import NodeWithScore, TextNode

    postprocessor = tei_rerank.TextEmbeddingInference(base_url=server.url, top_n=3)
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
    instruction = "Find the passage that names a city"
    body = {
        "query": QUERY,
        "documents": [{"text": text} for text in [*documents[:2], long_document]],
        "return_documents": True,
        "instruction": instruction,
        "long_documents": "chunk",
        "max_tokens_per_doc": 24,
    }
    answer = httpx.post(server.url + "/v1/rerank", json=body).json()
    want = reranker.rerank(
        QUERY,
        [*documents[:2], long_document],
        instruction=instruction,
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
    with adapter.engine:  # the engine it built, and its connections, closed
        np.testing.assert_allclose(
            adapter.embed_query(QUERY), embedder.embed_queries([QUERY])[0], atol=TOLERANCE
        )


def test_a_model_the_server_does_not_serve_gets_404(
    server: RunningServer, documents: list[str], http: httpx.Client
) -> None:
    """As vLLM answers: a ``model`` other than the endpoint's is refused, naming both."""
    openai = pytest.importorskip("openai")
    cohere = pytest.importorskip("cohere")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
        for wrong in ("text-embedding-3-small", RERANKER, "text-embedding-3-small:query"):
            with pytest.raises(openai.NotFoundError) as refused:
                client.embeddings.create(model=wrong, input=documents[:1])
            message = refused.value.body["message"]  # type: ignore[index]
            assert repr(wrong) in message
            assert repr(EMBEDDING) in message
    co = cohere.ClientV2(base_url=server.url, api_key="unused", httpx_client=http)
    with pytest.raises(cohere.errors.NotFoundError) as refused_rerank:
        co.rerank(model="rerank-v3.5", query=QUERY, documents=documents)
    message = refused_rerank.value.body["message"]
    assert "'rerank-v3.5'" in message
    assert repr(RERANKER) in message
    classify = httpx.post(server.url + "/classify", json={"model": EMBEDDING, "input": [[1, 2]]})
    assert classify.status_code == 404
    assert repr(RERANKER) in classify.json()["message"]


def test_the_served_name_the_model_id_and_its_last_component_are_accepted(
    server: RunningServer, embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str]
) -> None:
    path = str(embedder.model_path)
    want = embedder.embed_documents(documents[:2])
    for model in (None, "", EMBEDDING, path, PurePath(path).name, f"{EMBEDDING}:document"):
        body = {"input": documents[:2], "model": model}
        answer = httpx.post(server.url + "/v1/embeddings", json=body)
        assert answer.status_code == 200, (model, answer.text)
        assert answer.json()["model"] == EMBEDDING
        np.testing.assert_allclose(
            [row["embedding"] for row in answer.json()["data"]], want, atol=TOLERANCE
        )
    queried = httpx.post(
        server.url + "/v1/embeddings",
        json={"input": [QUERY], "model": PurePath(path).name + ":query"},
    )
    np.testing.assert_allclose(
        queried.json()["data"][0]["embedding"], embedder.embed_queries([QUERY])[0], atol=TOLERANCE
    )
    reranker_path = str(reranker.model_path)
    for model in (RERANKER, reranker_path, PurePath(reranker_path).name):
        body = {"model": model, "query": QUERY, "documents": documents[:2]}
        ranked = httpx.post(server.url + "/v2/rerank", json=body)
        assert ranked.status_code == 200, (model, ranked.text)
        assert ranked.json()["model"] == RERANKER
    openai = pytest.importorskip("openai")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused") as client:
        assert [model.id for model in client.models.list().data] == [EMBEDDING, RERANKER]


def test_cohere_embedding_types_float_and_base64_only(
    server: RunningServer, embedder: Qwen3Embedder, documents: list[str], http: httpx.Client
) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(base_url=server.url, api_key="unused", httpx_client=http)
    both = client.embed(
        model=EMBEDDING,
        texts=documents[:3],
        input_type="search_document",
        embedding_types=["float", "base64"],
    )
    assert both.embeddings.base64 is not None
    decoded = np.array(
        [np.frombuffer(base64.b64decode(row), dtype="<f4") for row in both.embeddings.base64]
    )
    np.testing.assert_allclose(decoded, embedder.embed_documents(documents[:3]), atol=TOLERANCE)
    np.testing.assert_array_equal(decoded, np.asarray(both.embeddings.float_, dtype=np.float32))
    only = client.embed(
        model=EMBEDDING,
        texts=documents[:3],
        input_type="search_document",
        embedding_types=["base64"],
    )
    assert only.embeddings.float_ is None
    assert only.embeddings.base64 == both.embeddings.base64
    for unsupported in (["int8"], ["float", "binary"], ["ubinary"], ["uint8"]):
        with pytest.raises(cohere.errors.UnprocessableEntityError) as refused:
            client.embed(
                model=EMBEDDING,
                texts=documents[:1],
                input_type="search_document",
                embedding_types=unsupported,
            )
        message = refused.value.body["message"]
        assert repr(unsupported[-1]) in message
        assert "'float' and 'base64'" in message


SHORT_EMBEDDING = 40
SHORT_RERANKER = 100


@pytest.fixture(scope="module")
def short_server(test_models: ModelPaths) -> Iterator[RunningServer]:
    """A server whose models take short inputs: ``max_length`` 40 (embedding), 100 (reranker)."""
    with (
        Qwen3Embedder(test_models.embedding, backend=CPU, max_length=SHORT_EMBEDDING) as short,
        Qwen3Reranker(test_models.reranker, backend=CPU, max_length=SHORT_RERANKER) as rerank,
        RunningServer(
            create_app(short, rerank, embedding_model_name=EMBEDDING, reranker_model_name=RERANKER)
        ) as running,
    ):
        yield running


def around_limit(tokens: Callable[[str], int], limit: int) -> tuple[str, str]:
    """The longest text of repeated words that is at most ``limit`` tokens, and one word
    more (over it), by ``tokens``, the uncut count."""
    n = 1
    while tokens(" ".join(["word"] * (n + 1))) <= limit:
        n += 1
    fits, over = " ".join(["word"] * n), " ".join(["word"] * (n + 1))
    assert tokens(fits) <= limit < tokens(over)
    return fits, over


def test_embed_refuses_to_cut_what_the_request_asks_to_keep_whole(
    short_server: RunningServer, embedder: Qwen3Embedder, http: httpx.Client
) -> None:
    """TEI ``truncate: false`` and Cohere ``truncate: "NONE"``: an input over max_length is a
    413 naming it and its length, never a vector of its beginning."""
    url = short_server.url
    short = short_server.app.state.service.embedder

    def length(text: str) -> int:  # uncut: the full-length engine's count
        return len(embedder.tokenize_documents([text])[0])

    fits, over = around_limit(length, SHORT_EMBEDDING)
    refused = httpx.post(
        url + "/embed", json={"inputs": ["a", over, fits, over], "truncate": False}
    )
    assert refused.status_code == 413, refused.text
    message = refused.json()["message"]
    assert f"input 1 has {length(over)} tokens" in message
    assert f"input 3 has {length(over)} tokens" in message
    assert "input 2 " not in message
    assert f"max_length={SHORT_EMBEDDING}" in message
    whole = httpx.post(url + "/embed", json={"inputs": ["a", fits], "truncate": False})
    assert whole.status_code == 200, whole.text
    np.testing.assert_allclose(whole.json(), short.embed_documents(["a", fits]), atol=TOLERANCE)
    # Left to cut (TEI's truncate: true), the engine's cut: its beginning.
    cut = httpx.post(url + "/embed", json={"inputs": [over], "truncate": True})
    np.testing.assert_allclose(cut.json(), short.embed_documents([over]), atol=TOLERANCE)
    left = httpx.post(url + "/embed", json={"inputs": [over], "truncation_direction": "Left"})
    assert left.status_code == 422
    assert '"Left"' in left.json()["message"]
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(base_url=url, api_key="unused", httpx_client=http)
    with pytest.raises(cohere.core.ApiError) as too_long:
        client.embed(
            model=EMBEDDING,
            texts=[fits, over],
            input_type="search_document",
            embedding_types=["float"],
            truncate="NONE",
        )
    assert too_long.value.status_code == 413
    assert f"input 1 has {length(over)} tokens" in too_long.value.body["message"]
    kept = client.embed(
        model=EMBEDDING,
        texts=[fits],
        input_type="search_document",
        embedding_types=["float"],
        truncate="NONE",
    )
    np.testing.assert_allclose(
        kept.embeddings.float_, short.embed_documents([fits]), atol=TOLERANCE
    )
    with pytest.raises(cohere.errors.UnprocessableEntityError) as start:
        client.embed(
            model=EMBEDDING,
            texts=[over],
            input_type="search_document",
            embedding_types=["float"],
            truncate="START",
        )
    assert '"START"' in start.value.body["message"]


def test_rerank_refuses_to_cut_what_the_request_asks_to_keep_whole(
    short_server: RunningServer, reranker: Qwen3Reranker
) -> None:
    url = short_server.url
    short = short_server.app.state.service.reranker

    def length(text: str) -> int:  # uncut: the full-length engine's whole prompt
        return len(reranker.tokenize(QUERY, [text])[0])

    fits, over = around_limit(length, SHORT_RERANKER)
    body = {"query": QUERY, "texts": [fits, over, "a"], "truncate": False}
    refused = httpx.post(url + "/rerank", json=body)
    assert refused.status_code == 413, refused.text
    message = refused.json()["message"]
    assert f"document 1 has {length(over)} tokens" in message
    assert "document 0 " not in message
    assert f"max_length={SHORT_RERANKER}" in message
    whole = httpx.post(
        url + "/rerank",
        json={"query": QUERY, "texts": [fits, "a"], "truncate": False, "raw_scores": True},
    )
    assert whole.status_code == 200, whole.text
    scores = {row["index"]: row["score"] for row in whole.json()}
    np.testing.assert_allclose(
        [scores[0], scores[1]], short.logits(QUERY, [fits, "a"]), atol=TOLERANCE
    )
    cohere_body = {"query": QUERY, "documents": ["a", over], "truncate": "NONE"}
    cohere_refused = httpx.post(url + "/v2/rerank", json=cohere_body)
    assert cohere_refused.status_code == 413
    assert f"document 1 has {length(over)} tokens" in cohere_refused.json()["message"]
    # A cut the request asks for itself, and windows that read the whole document, are kept.
    asked = httpx.post(url + "/v2/rerank", json={**cohere_body, "max_tokens_per_doc": 4})
    assert asked.status_code == 200, asked.text
    chunked = httpx.post(url + "/v2/rerank", json={**cohere_body, "long_documents": "chunk"})
    assert chunked.status_code == 200, chunked.text
    chunk_scores = {row["index"]: row["log_odds"] for row in chunked.json()["results"]}
    np.testing.assert_allclose(
        [chunk_scores[0], chunk_scores[1]],
        short.logits(QUERY, ["a", over], long_documents="chunk"),
        atol=TOLERANCE,
    )
    # Windows that stop before its end (past max_chunks_per_document) leave it unread: refused.
    endless = " ".join(["word"] * 3000)
    unread = httpx.post(
        url + "/v2/rerank",
        json={**cohere_body, "documents": [endless, "a"], "long_documents": "chunk"},
    )
    assert unread.status_code == 413, unread.text
    assert f"document 0 has {length(endless)} tokens" in unread.json()["message"]
    assert "max_chunks_per_document=" in unread.json()["message"]
    start = httpx.post(url + "/v2/rerank", json={**cohere_body, "truncate": "START"})
    assert start.status_code == 422
    assert '"START"' in start.json()["message"]
