"""Two-stage retrieval in real LlamaIndex pipelines: a VectorStoreIndex over seed 003's
corpus with Qwen3Embedding, a retriever of 8, Qwen3Rerank to 3, query engines answering
through LlamaIndex's offline MockLLM, persistence, and an IngestionPipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import (
    Document,
    StorageContext,
    VectorStoreIndex,
    load_index_from_storage,
)
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore

from llamaindex_qwen3 import Qwen3Embedding, Qwen3Rerank
from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.testing import ModelPaths
from tests.options import CPU

TOP_K = 8
TOP_N = 3


@pytest.fixture(scope="module")
def embed_model(test_models: ModelPaths) -> Qwen3Embedding:
    # Both adapters from folders, as users build them (the weights are the session engines').
    return Qwen3Embedding(model=test_models.embedding, backend=CPU)


@pytest.fixture(scope="module")
def rerank(test_models: ModelPaths) -> Qwen3Rerank:
    return Qwen3Rerank(model=test_models.reranker, top_n=TOP_N, backend=CPU)


@pytest.fixture(scope="module")
def corpus_vectors(embedder: Qwen3Embedder, corpus: list[str]) -> np.ndarray:
    return embedder.embed_documents(corpus)


@pytest.fixture(scope="module")
def documents(corpus: list[str]) -> list[Document]:
    return [Document(text=text, id_=f"doc-{i}") for i, text in enumerate(corpus)]


@pytest.fixture(scope="module")
def index(documents: list[Document], embed_model: Qwen3Embedding) -> VectorStoreIndex:
    # embed_model passed explicitly: LlamaIndex must never fall back to its OpenAI default.
    return VectorStoreIndex.from_documents(documents, embed_model=embed_model)


def embed_text(node: BaseNode) -> str:
    return node.get_content(metadata_mode=MetadataMode.EMBED)


def doc_index(node: BaseNode) -> int:
    assert node.ref_doc_id is not None
    return int(node.ref_doc_id.removeprefix("doc-"))


def stored_embeddings(index: VectorStoreIndex) -> dict[str, list[float]]:
    """Each node's text and its vector as the vector store holds it."""
    nodes = index.docstore.docs.values()
    return {embed_text(n): index.vector_store.get(n.node_id) for n in nodes}


TwoStages = Callable[[VectorStoreIndex, str], list[NodeWithScore]]


@pytest.fixture(scope="module")
def two_stages(
    rerank: Qwen3Rerank,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    corpus_vectors: np.ndarray,
) -> TwoStages:
    """Retrieve 8 from an index and rerank to 3, checking that both stages give the
    engine's numbers; returns the reranked nodes."""

    def check(index: VectorStoreIndex, query: str) -> list[NodeWithScore]:
        hits = index.as_retriever(similarity_top_k=TOP_K).retrieve(query)
        assert len(hits) == TOP_K
        # First stage: the engine's cosine similarities, best first.
        similarity = corpus_vectors @ embedder.embed_queries([query])[0]
        got = [h.score for h in hits]
        want = [similarity[doc_index(h.node)] for h in hits]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        assert min(got) >= np.sort(similarity)[-TOP_K] - 1e-5
        # Second stage: the engine's P(yes) for the same (query, text) pairs.
        reranked = rerank.postprocess_nodes(hits, query_str=query)
        scores = reranker.score(query, [embed_text(h.node) for h in hits])
        order = np.argsort(-scores, kind="stable")[:TOP_N]
        assert [n.node.node_id for n in reranked] == [hits[i].node.node_id for i in order]
        np.testing.assert_allclose([n.score for n in reranked], scores[order], atol=1e-5, rtol=0)
        return reranked

    return check


def test_index_retriever_and_rerank_equal_the_engines(
    index: VectorStoreIndex,
    embed_model: Qwen3Embedding,
    two_stages: TwoStages,
    embedder: Qwen3Embedder,
    corpus: list[str],
    corpus_vectors: np.ndarray,
    queries: list[str],
) -> None:
    stored = stored_embeddings(index)
    assert sorted(stored) == sorted(corpus)  # one node per (short) document
    np.testing.assert_allclose([stored[text] for text in corpus], corpus_vectors, atol=1e-5, rtol=0)
    for query in queries:
        np.testing.assert_allclose(
            embed_model.get_query_embedding(query), embedder.embed_queries([query])[0], atol=1e-5
        )
        two_stages(index, query)


def check_response_sources(
    sources: list[NodeWithScore], reranked: list[NodeWithScore], answer: str
) -> None:
    assert [(n.node.node_id, n.score) for n in sources] == [
        (n.node.node_id, pytest.approx(n.score, abs=1e-6)) for n in reranked
    ]
    # MockLLM answers with the prompt it was given: the reranked nodes were the context.
    assert all(n.node.get_content() in answer for n in reranked)


async def test_query_engine_answers_through_mock_llm(
    index: VectorStoreIndex, rerank: Qwen3Rerank, two_stages: TwoStages, queries: list[str]
) -> None:
    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=TOP_K, node_postprocessors=[rerank]
    )
    for query in queries:
        reranked = two_stages(index, query)
        response = engine.query(query)
        check_response_sources(response.source_nodes, reranked, str(response))
        async_response = await engine.aquery(query)
        check_response_sources(async_response.source_nodes, reranked, str(async_response))


def test_persisted_index_reloads_with_the_same_results(
    tmp_path: Path,
    index: VectorStoreIndex,
    embed_model: Qwen3Embedding,
    two_stages: TwoStages,
    queries: list[str],
) -> None:
    index.storage_context.persist(persist_dir=str(tmp_path))
    storage = StorageContext.from_defaults(persist_dir=str(tmp_path))
    loaded = load_index_from_storage(storage, embed_model=embed_model)
    assert isinstance(loaded, VectorStoreIndex)
    assert stored_embeddings(loaded) == stored_embeddings(index)
    for query in queries:
        two_stages(loaded, query)  # the engine's numbers, as from the index it was saved from


async def test_ingestion_pipeline_embeds_split_nodes_like_the_engine(
    embed_model: Qwen3Embedding, embedder: Qwen3Embedder, corpus: list[str]
) -> None:
    documents = [
        Document(text=text, id_=f"doc-{i}", metadata={"title": f"note {i}"})
        for i, text in enumerate(corpus)
    ]

    def pipeline() -> IngestionPipeline:
        splitter = SentenceSplitter(chunk_size=48, chunk_overlap=0)
        return IngestionPipeline(transformations=[splitter, embed_model])

    nodes = pipeline().run(documents=documents)
    assert len(nodes) > len(documents)  # some documents were split
    texts = [embed_text(n) for n in nodes]
    assert all(t.startswith("title: note ") for t in texts)  # the metadata is embedded too
    want = embedder.embed_documents(texts)
    np.testing.assert_allclose([n.embedding for n in nodes], want, atol=1e-5, rtol=0)
    async_nodes = await pipeline().arun(documents=documents)
    assert [embed_text(n) for n in async_nodes] == texts
    np.testing.assert_allclose([n.embedding for n in async_nodes], want, atol=1e-5, rtol=0)
