"""The adapters inside real LangChain pipelines: two-stage retrieval over an in-memory and a
persistent FAISS store, LCEL, embedding caches and LangChain's own CrossEncoderReranker."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from langchain_classic.embeddings import CacheBackedEmbeddings
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.stores import InMemoryByteStore
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_qwen3 import Qwen3CrossEncoder, Qwen3Embeddings, Qwen3Rerank
from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.testing import ModelPaths
from tests.options import CPU

K = 8
TOP_N = 3


@pytest.fixture(scope="module")
def emb(test_models: ModelPaths) -> Qwen3Embeddings:
    return Qwen3Embeddings(model=str(test_models.embedding), backend=CPU)


@pytest.fixture(scope="module")
def rerank(test_models: ModelPaths) -> Qwen3Rerank:
    return Qwen3Rerank(model=str(test_models.reranker), backend=CPU, top_n=TOP_N)


@pytest.fixture(scope="module")
def store(emb: Qwen3Embeddings, corpus: list[str]) -> InMemoryVectorStore:
    return InMemoryVectorStore.from_texts(
        corpus, emb, metadatas=[{"n": i} for i in range(len(corpus))]
    )


@pytest.fixture(scope="module")
def retriever(store: InMemoryVectorStore, rerank: Qwen3Rerank) -> ContextualCompressionRetriever:
    return ContextualCompressionRetriever(
        base_compressor=rerank, base_retriever=store.as_retriever(search_kwargs={"k": K})
    )


def expected_hits(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, corpus: list[str], query: str
) -> list[tuple[str, float]]:
    """Two-stage retrieval computed with the engines alone: cosine top-K, then P(yes)."""
    similarity = embedder.embed_documents(corpus) @ embedder.embed_queries([query])[0]
    candidates = [corpus[i] for i in np.argsort(-similarity, kind="stable")[:K]]
    return [(hit.document, hit.score) for hit in reranker.rerank(query, candidates, top_n=TOP_N)]


def assert_hits(got: Sequence[Document], want: list[tuple[str, float]]) -> None:
    assert [d.page_content for d in got] == [text for text, _ in want]
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in got], [s for _, s in want], atol=1e-5, rtol=0
    )


async def test_two_stage_chain_in_memory(
    retriever: ContextualCompressionRetriever,
    store: InMemoryVectorStore,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    corpus: list[str],
    queries: list[str],
) -> None:
    # The vectors in the store are the engine's.
    stored = {record["text"]: record["vector"] for record in store.store.values()}
    np.testing.assert_allclose(
        [stored[t] for t in corpus], embedder.embed_documents(corpus), atol=1e-6, rtol=0
    )
    for query in queries:
        want = expected_hits(embedder, reranker, corpus, query)
        got = retriever.invoke(query)
        assert_hits(got, want)
        # The store's metadata travels through the reranker.
        assert all(d.metadata["n"] == corpus.index(d.page_content) for d in got)
        assert_hits(await retriever.ainvoke(query), want)


def test_two_stage_chain_on_faiss_reopened_from_disk(
    tmp_path: Path,
    emb: Qwen3Embeddings,
    rerank: Qwen3Rerank,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    corpus: list[str],
    queries: list[str],
) -> None:
    ids = [f"note-{i}" for i in range(len(corpus))]
    metadatas = [{"source": f"notes/{i}.md"} for i in range(len(corpus))]
    FAISS.from_texts(corpus, emb, metadatas=metadatas, ids=ids).save_local(str(tmp_path))
    # A fresh store from the files alone (the pickle is this test's own, hence "dangerous").
    reopened = FAISS.load_local(str(tmp_path), emb, allow_dangerous_deserialization=True)
    vectors = reopened.index.reconstruct_n(0, reopened.index.ntotal)
    np.testing.assert_allclose(vectors, embedder.embed_documents(corpus), atol=1e-6, rtol=0)
    retriever = ContextualCompressionRetriever(
        base_compressor=rerank, base_retriever=reopened.as_retriever(search_kwargs={"k": K})
    )
    for query in queries:
        got = retriever.invoke(query)
        # FAISS ranks by L2 distance, which orders unit vectors as cosine does.
        assert_hits(got, expected_hits(embedder, reranker, corpus, query))
        for doc in got:
            n = corpus.index(doc.page_content)
            assert doc.id == ids[n] and doc.metadata["source"] == metadatas[n]["source"]


async def test_lcel_chain(retriever: ContextualCompressionRetriever, queries: list[str]) -> None:
    def format_docs(docs: Sequence[Document]) -> str:
        return "\n".join(f"[{d.metadata['relevance_score']:.4f}] {d.page_content}" for d in docs)

    prompt = PromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")
    chain = {
        "context": retriever | RunnableLambda(format_docs),
        "question": RunnablePassthrough(),
    } | prompt
    for query, value in zip(queries, chain.batch(queries), strict=True):
        text = value.to_string()
        assert text.endswith(f"Question: {query}")
        assert text.split("\n\nQuestion")[0] == "Context:\n" + format_docs(retriever.invoke(query))
    assert (await chain.ainvoke(queries[0])) == chain.invoke(queries[0])


def test_cache_backed_embeddings(
    emb: Qwen3Embeddings, embedder: Qwen3Embedder, corpus: list[str], tmp_path: Path
) -> None:
    byte_store = InMemoryByteStore()
    cached = CacheBackedEmbeddings.from_bytes_store(
        emb, byte_store, namespace="qwen3-tiny", query_embedding_cache=True, key_encoder="sha256"
    )
    first = cached.embed_documents(corpus)
    np.testing.assert_allclose(first, embedder.embed_documents(corpus), atol=1e-6, rtol=0)
    assert len(list(byte_store.yield_keys())) == len(set(corpus))
    query = cached.embed_query("什么是重力？")
    # The second call is served by the store: over an adapter whose model does not even
    # exist (it would raise on first use), the same namespace returns the same vectors.
    unusable = Qwen3Embeddings(model=str(tmp_path / "missing"))
    again = CacheBackedEmbeddings.from_bytes_store(
        unusable,
        byte_store,
        namespace="qwen3-tiny",
        query_embedding_cache=True,
        key_encoder="sha256",
    )
    assert again.embed_documents(corpus) == first
    assert again.embed_query("什么是重力？") == query
    assert not unusable.engine_loaded


def test_cross_encoder_reranker_orders_like_qwen3_rerank(
    rerank: Qwen3Rerank, reranker: Qwen3Reranker, corpus: list[str], queries: list[str]
) -> None:
    # Built from a model id in test_langchain_adapters.py; a ready engine saves a load here.
    compressor = CrossEncoderReranker(model=Qwen3CrossEncoder(engine=reranker), top_n=5)
    top5 = rerank.model_copy(update={"top_n": 5})  # shares the chain's engine
    docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(corpus)]
    for query in queries:
        ours = top5.compress_documents(docs, query)
        theirs = compressor.compress_documents(docs, query)
        assert [d.id for d in theirs] == [d.id for d in ours]
