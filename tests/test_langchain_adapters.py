"""Qwen3Embeddings, Qwen3Rerank and Qwen3CrossEncoder against the engine they adapt."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import pickle
import shutil
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from langchain_core.documents import Document
from pydantic import ValidationError

from langchain_qwen3 import Qwen3CrossEncoder, Qwen3Embeddings, Qwen3Rerank
from qwen3_core import (
    ModelKindError,
    ModelNotFoundError,
    Qwen3Embedder,
    Qwen3Reranker,
    TransformersOptions,
)
from qwen3_core.testing import ModelPaths
from tests.model_loads import model_loads
from tests.options import CPU, on_cpu

QUERY = "中国的首都是哪里？"


@pytest.fixture(scope="module")
def emb(test_models: ModelPaths) -> Qwen3Embeddings:
    return Qwen3Embeddings(model=str(test_models.embedding), backend=CPU)


@pytest.fixture(scope="module")
def rerank(test_models: ModelPaths) -> Qwen3Rerank:
    return Qwen3Rerank(model=str(test_models.reranker), backend=CPU, top_n=3)


@pytest.fixture(scope="module")
def cross(test_models: ModelPaths) -> Qwen3CrossEncoder:
    return Qwen3CrossEncoder(model=str(test_models.reranker), backend=CPU)


def documents(texts: list[str]) -> list[Document]:
    return [
        Document(page_content=t, id=f"doc-{i}", metadata={"source": f"s{i}.md", "tags": ["x"]})
        for i, t in enumerate(texts)
    ]


# --- construction -----------------------------------------------------------------------


@pytest.mark.disable_socket
def test_construction_loads_nothing_and_fetches_nothing() -> None:
    emb = Qwen3Embeddings()
    rerank = Qwen3Rerank()
    cross = Qwen3CrossEncoder(model="Qwen/Qwen3-Reranker-0.6B")
    adapters = [emb, Qwen3Embeddings(dimensions=128), rerank, cross]
    assert not any(a.engine_loaded for a in adapters)
    # Empty input is answered without building the engine either.
    assert emb.embed_documents([]) == []
    assert rerank.compress_documents([], "q") == []
    assert cross.score([]) == []
    assert not any(a.engine_loaded for a in adapters)


def test_bad_folder_fails_on_first_use_with_the_engine_error(
    tmp_path: Path, test_models: ModelPaths
) -> None:
    missing = tmp_path / "no-such-model"
    emb = Qwen3Embeddings(model=str(missing), backend=CPU)
    rerank = Qwen3Rerank(model=str(missing), backend=CPU)
    assert not emb.engine_loaded and not rerank.engine_loaded
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        emb.embed_query("q")
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        rerank.compress_documents([Document(page_content="d")], "q")
    # The wrong kind of checkpoint: the engine tells which class loads it.
    cross = Qwen3CrossEncoder(model=str(test_models.embedding), backend=CPU)
    with pytest.raises(ModelKindError, match="Qwen3Embedder"):
        cross.score([("q", "d")])


def test_fields_are_documented_and_strict() -> None:
    for cls in (Qwen3Embeddings, Qwen3Rerank, Qwen3CrossEncoder):
        assert all(field.description for field in cls.model_fields.values()), cls
    with pytest.raises(ValidationError, match="top_k"):
        Qwen3Rerank(top_k=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Qwen3Rerank(score_threshold=1.5)


def test_settings_round_trip_through_a_dict() -> None:
    # torch objects are stored as plain strings, so the settings round-trip through a dict.
    backend = TransformersOptions(dtype=torch.bfloat16, device=torch.device("cpu"))
    emb = Qwen3Embeddings(backend=backend)
    assert emb.backend == TransformersOptions(device="cpu", dtype="bfloat16")
    assert Qwen3Embeddings(**emb.model_dump()).model_dump() == emb.model_dump()


def test_ready_engine(embedder: Qwen3Embedder, reranker: Qwen3Reranker) -> None:
    emb = Qwen3Embeddings(engine=embedder)
    assert emb.engine_loaded and emb.engine is embedder
    # The fields describe the engine that runs, not the defaults.
    assert Path(emb.model) == embedder.model_path and emb.backend == embedder.options
    assert emb.backend == on_cpu()
    assert emb.query_instruction == embedder.instruction
    rerank = Qwen3Rerank(engine=reranker, top_n=2)
    assert rerank.engine is reranker and Path(rerank.model) == reranker.model_path
    assert "engine" not in rerank.model_dump()
    with pytest.raises(ValidationError, match="either engine= or those settings"):
        Qwen3Embeddings(engine=embedder, model="Qwen/Qwen3-Embedding-0.6B")
    with pytest.raises(ValidationError, match="backend, max_length"):
        Qwen3CrossEncoder(engine=reranker, backend=CPU, max_length=8192)
    with pytest.raises(ValidationError):
        Qwen3Rerank(engine=embedder)  # type: ignore[arg-type]


def test_engine_is_built_on_first_access(
    test_models: ModelPaths, reranker: Qwen3Reranker, embedder: Qwen3Embedder
) -> None:
    rerank = Qwen3Rerank(model=str(test_models.reranker), backend=CPU)
    cross = Qwen3CrossEncoder(model=str(test_models.reranker), backend=CPU)
    emb = Qwen3Embeddings(model=str(test_models.embedding), backend=CPU, dimensions=16)
    assert not any(a.engine_loaded for a in (rerank, cross, emb))
    engine = rerank.engine  # builds it: the weights are the session engine's (load cache)
    assert isinstance(engine, Qwen3Reranker) and rerank.engine_loaded
    assert rerank.engine is engine and engine.model_path == reranker.model_path
    assert engine.loaded_model is reranker.loaded_model
    assert not cross.engine_loaded  # each adapter builds its own, on its own first use
    # The engine is built from the fields, and is the one the adapter's calls use.
    assert emb.engine.dimensions == 16 and len(emb.embed_query("q")) == 16
    assert Qwen3Embeddings(engine=embedder).engine is embedder
    assert Qwen3CrossEncoder(engine=reranker).engine is reranker


def test_adapters_share_weights(
    tmp_path: Path, test_models: ModelPaths, caplog: pytest.LogCaptureFixture
) -> None:
    """Two adapters on the same model, device and dtype load the weights once: counted by
    the line the engine's one loader logs for each load, on a (hard-linked) copy of the
    folder no other test has loaded."""
    folder = tmp_path / "embedding"
    shutil.copytree(test_models.embedding, folder, copy_function=os.link)
    with caplog.at_level(logging.INFO, logger="qwen3_core"):
        first = Qwen3Embeddings(model=str(folder), backend=CPU)
        # Another spelling of the folder and another output size: still the same weights.
        second = Qwen3Embeddings(model=f"{folder}/", backend=CPU, dimensions=16)
        assert model_loads(caplog) == []
        (full,), (short,) = first.embed_documents(["shared"]), second.embed_documents(["shared"])
    assert model_loads(caplog) == [("embedding", str(folder))]
    assert first.engine.loaded_model is second.engine.loaded_model
    # dimensions=16 is the Matryoshka cut of the same vector, renormalised.
    assert len(short) == 16
    cut = np.array(full[:16])
    np.testing.assert_allclose(short, cut / np.linalg.norm(cut), atol=1e-5)


def test_copies_share_the_engine_and_pickles_rebuild_it(
    emb: Qwen3Embeddings, reranker: Qwen3Reranker
) -> None:
    emb.embed_query("load it")
    for clone in (
        copy.copy(emb),
        copy.deepcopy(emb),
        emb.model_copy(update={"query_instruction": "x"}),
    ):
        assert clone.engine_loaded and clone.engine is emb.engine
    # A new engine setting means a new engine (built on first use).
    assert not emb.model_copy(update={"dimensions": 8}).engine_loaded
    restored = pickle.loads(pickle.dumps(emb))
    assert restored.model_dump() == emb.model_dump()
    assert not restored.engine_loaded
    # An adapter on a given engine unpickles as one to be built from the fields that
    # describe that engine (building it again here would only repeat the load above).
    rerank = Qwen3Rerank(engine=reranker, top_n=2, instruction="Find capitals")
    again = pickle.loads(pickle.dumps(rerank))
    assert again.ready_engine is None and not again.engine_loaded
    assert again.model_dump() == rerank.model_dump()
    assert Path(again.model) == reranker.model_path and again.instruction == "Find capitals"


# --- embeddings -------------------------------------------------------------------------


def test_embeddings_equal_the_engine(
    emb: Qwen3Embeddings, embedder: Qwen3Embedder, corpus: list[str], queries: list[str]
) -> None:
    got = emb.embed_documents(corpus)
    assert isinstance(got, list) and all(isinstance(v, list) for v in got)
    assert all(isinstance(x, float) for x in got[0])
    np.testing.assert_allclose(np.array(got), embedder.embed_documents(corpus), atol=1e-6)
    for query in queries:
        vector = emb.embed_query(query)
        np.testing.assert_allclose(vector, embedder.embed_queries([query])[0], atol=1e-6)
        # The query is instructed: it is not embedded like the same text as a document.
        assert not np.allclose(vector, embedder.embed_documents([query])[0], atol=1e-3)


def test_query_instruction(embedder: Qwen3Embedder) -> None:
    task = "Retrieve notes about physics"
    custom = Qwen3Embeddings(engine=embedder, query_instruction=task)
    want = embedder.embed_queries([QUERY], instruction=task)[0]
    np.testing.assert_allclose(custom.embed_query(QUERY), want, atol=1e-6)
    assert not np.allclose(want, embedder.embed_queries([QUERY])[0], atol=1e-3)


def test_embeddings_bad_input_gives_the_engine_type_error(emb: Qwen3Embeddings) -> None:
    with pytest.raises(TypeError, match="bare str"):
        emb.embed_documents("one text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        emb.embed_documents(["a", 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="text must be a str, got NoneType"):
        emb.embed_query(None)  # type: ignore[arg-type]


# --- reranking --------------------------------------------------------------------------


def test_rerank_scores_equal_the_engine(
    rerank: Qwen3Rerank, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    docs = documents(corpus)
    got = rerank.compress_documents(docs, QUERY)
    scores = reranker.score(QUERY, corpus)
    best = np.argsort(-scores, kind="stable")[:3]
    assert [d.id for d in got] == [f"doc-{i}" for i in best]
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in got], scores[best], atol=1e-5, rtol=0
    )


def test_documents_are_copied_with_ids_and_metadata(
    reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    docs = documents(corpus[:5])
    before = copy.deepcopy(docs)
    got = Qwen3Rerank(engine=reranker, top_n=None).compress_documents(docs, QUERY)
    assert docs == before  # inputs untouched, metadata dicts included
    assert sorted(d.id or "" for d in got) == [d.id for d in docs]
    by_id = {d.id: d for d in docs}
    for out in got:
        source = by_id[out.id]
        assert out is not source and out.metadata is not source.metadata
        assert out.page_content == source.page_content
        assert out.metadata == {
            **source.metadata,
            "relevance_score": out.metadata["relevance_score"],
            "relevance_logit": out.metadata["relevance_logit"],
        }
        assert isinstance(out.metadata["relevance_score"], float)
        assert isinstance(out.metadata["relevance_logit"], float)
        assert 0.0 <= out.metadata["relevance_score"] <= 1.0
    assert [d.metadata["relevance_score"] for d in got] == sorted(
        (d.metadata["relevance_score"] for d in got), reverse=True
    )


def test_rerank_edge_cases(rerank: Qwen3Rerank, reranker: Qwen3Reranker, corpus: list[str]) -> None:
    assert rerank.compress_documents([], QUERY) == []
    (only,) = rerank.compress_documents(documents(corpus[:1]), QUERY)
    assert only.id == "doc-0"
    assert abs(only.metadata["relevance_score"] - reranker.score(QUERY, corpus[:1])[0]) < 1e-5
    # top_n larger than the input: every document, best first.
    two = rerank.compress_documents(documents(corpus[:2]), QUERY)
    assert sorted(d.id or "" for d in two) == ["doc-0", "doc-1"]
    # Duplicates are kept, tie, and keep their input order.
    dup = documents([corpus[3], corpus[5], corpus[3]])
    got = Qwen3Rerank(engine=reranker, top_n=None).compress_documents(dup, QUERY)
    assert len(got) == 3
    scores = {d.id: d.metadata["relevance_score"] for d in got}
    assert scores["doc-0"] == scores["doc-2"]
    ids = [d.id for d in got]
    assert ids.index("doc-0") < ids.index("doc-2")
    assert Qwen3Rerank(engine=reranker, top_n=0).compress_documents(dup, QUERY) == []


def test_score_threshold(reranker: Qwen3Reranker, corpus: list[str]) -> None:
    scores = reranker.score(QUERY, corpus)
    cut = float(np.median(scores))
    kept = Qwen3Rerank(engine=reranker, top_n=None, score_threshold=cut).compress_documents(
        documents(corpus), QUERY
    )
    assert len(kept) == int((scores >= cut).sum()) and len(kept) < len(corpus)
    assert all(d.metadata["relevance_score"] >= cut for d in kept)
    above_all = float(scores.max()) + 1e-3
    none = Qwen3Rerank(engine=reranker, score_threshold=above_all)
    assert none.compress_documents(documents(corpus), QUERY) == []


def test_rerank_custom_instruction(reranker: Qwen3Reranker, corpus: list[str]) -> None:
    task = "Find the passage that names a capital city"
    rerank = Qwen3Rerank(engine=reranker, instruction=task, top_n=None)
    got = {
        d.id: d.metadata["relevance_score"]
        for d in rerank.compress_documents(documents(corpus), QUERY)
    }
    want = reranker.score(QUERY, corpus, instruction=task)
    np.testing.assert_allclose([got[f"doc-{i}"] for i in range(len(corpus))], want, atol=1e-5)


def test_rerank_bad_input_gives_a_type_error(rerank: Qwen3Rerank) -> None:
    with pytest.raises(TypeError, match=r"documents\[1\] must be a Document, got str"):
        rerank.compress_documents([Document(page_content="a"), "b"], QUERY)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="query must be a str, got int"):
        rerank.compress_documents([Document(page_content="a")], 7)  # type: ignore[arg-type]


def test_cross_encoder_scores_equal_the_engine(
    cross: Qwen3CrossEncoder, reranker: Qwen3Reranker, corpus: list[str], queries: list[str]
) -> None:
    pairs = [(queries[i % 2], d) for i, d in enumerate(corpus)]
    got = cross.score(pairs)
    assert isinstance(got, list) and all(isinstance(s, float) for s in got)
    np.testing.assert_allclose(got, reranker.score_pairs(pairs), atol=1e-5, rtol=0)
    assert cross.score([]) == []
    with pytest.raises(TypeError, match=r"text_pairs\[0\] must be a \(query, document\) pair"):
        cross.score([("only a query",)])  # type: ignore[list-item]


# --- async ------------------------------------------------------------------------------


async def ticks_while(call: Awaitable[Any]) -> tuple[int, float]:
    """How often a 1 ms heartbeat ran on the event loop while ``call`` ran: a call that
    blocked the loop would leave it at 0."""
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)  # let the heartbeat start
    start, ticks = time.perf_counter(), 0
    await call
    elapsed = time.perf_counter() - start
    task.cancel()
    return ticks, elapsed


async def test_async_calls_leave_the_event_loop_free(
    emb: Qwen3Embeddings, rerank: Qwen3Rerank, corpus: list[str]
) -> None:
    # Distinct texts, enough work for tens of milliseconds: a blocking call gives 0 ticks
    # however long it runs, a threaded one about one per millisecond.
    texts = [f"{i}: " + corpus[i % len(corpus)] * 3 for i in range(64)]
    await emb.aembed_query("load the weights first")
    ticks, elapsed = await ticks_while(emb.aembed_documents(texts))
    assert ticks >= 1, (ticks, elapsed)
    ticks, elapsed = await ticks_while(rerank.acompress_documents(documents(texts), QUERY))
    assert ticks >= 1, (ticks, elapsed)
    ticks, elapsed = await ticks_while(emb.aembed_query(" ".join(texts)))
    assert ticks >= 1, (ticks, elapsed)


async def test_async_results_equal_sync(
    emb: Qwen3Embeddings, rerank: Qwen3Rerank, corpus: list[str]
) -> None:
    assert await emb.aembed_documents(corpus[:4]) == emb.embed_documents(corpus[:4])
    assert await emb.aembed_query(QUERY) == emb.embed_query(QUERY)
    docs = documents(corpus)
    assert await rerank.acompress_documents(docs, QUERY) == rerank.compress_documents(docs, QUERY)
    # Many concurrent calls on one adapter: all answered, each correctly.
    results = await asyncio.gather(*(emb.aembed_query(q) for q in corpus[:6]))
    assert results == [emb.embed_query(q) for q in corpus[:6]]
