"""Concurrency and failure midway, on the real tiny models.

- 8 threads, and 50 concurrent asyncio tasks, on one instance give exactly (bit for bit) the
  results of the same calls made one after another, for the engine and every adapter.
- 8 threads constructing adapters for one model folder at the same moment load it once.
- A call stopped midway (a KeyboardInterrupt from a forward hook on the real model, an
  out-of-memory error after the back-off) leaves the instance usable: the next call gives
  the results it gave before.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from langchain_qwen3 import Qwen3CrossEncoder, Qwen3Embeddings
from langchain_qwen3 import Qwen3Rerank as LangChainRerank
from llamaindex_qwen3 import Qwen3Embedding
from llamaindex_qwen3 import Qwen3Rerank as LlamaIndexRerank
from qwen3_core import Qwen3Embedder, Qwen3Reranker, RerankResult, TransformersOptions
from qwen3_core.testing import ModelPaths
from tests.faulty_models import link_or_copy

THREADS = 8
TASKS = 50


@pytest.fixture(scope="module")
def documents(corpus: list[str]) -> list[str]:
    """Texts of mixed lengths (several token batches per call)."""
    rng = random.Random(7)
    return [
        f"{i}: " + " ".join(rng.choice(corpus) for _ in range(rng.randint(1, 4))) for i in range(24)
    ]


def _as_array(result: Any) -> np.ndarray:
    """Any entry point's result as one array, for a bitwise comparison."""
    if isinstance(result, np.ndarray):
        return result
    if result and isinstance(result[0], RerankResult):
        return np.array([(r.index, r.score) for r in result])
    if result and isinstance(result[0], Document):
        return np.array([(int(d.id), d.metadata["relevance_score"]) for d in result])
    if result and isinstance(result[0], NodeWithScore):
        return np.array([(int(n.node.node_id), n.score) for n in result])
    return np.asarray(result)


def _assert_all_equal(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        a, b = _as_array(g), _as_array(w)
        assert a.shape == b.shape and np.array_equal(a, b), f"call {index} differs"


def _run_in_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    """All calls on ``THREADS`` threads, released together by a barrier."""
    barrier = threading.Barrier(THREADS)

    def start(index: int) -> list[tuple[int, Any]]:
        barrier.wait()
        return [(i, calls[i]()) for i in range(index, len(calls), THREADS)]

    results: dict[int, Any] = {}
    with ThreadPoolExecutor(THREADS) as pool:
        for part in pool.map(start, range(THREADS)):
            results.update(part)
    return [results[i] for i in range(len(calls))]


async def _gather(calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    return list(await asyncio.gather(*(call() for call in calls)))


def _engine_calls(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str], queries: list[str]
) -> list[Callable[[], Any]]:
    pairs = [(queries[i % 2], d) for i, d in enumerate(documents)]
    calls: list[Callable[[], Any]] = []
    for k in range(4):
        calls += [
            partial(embedder.embed_documents, documents[k::4]),
            partial(embedder.embed_queries, [*queries, documents[k]]),
            partial(reranker.score, queries[k % 2], documents[k * 3 : k * 3 + 12]),
            partial(reranker.score_pairs, pairs[k * 5 :]),
            partial(reranker.rerank, documents[k], documents, top_n=5),
        ]
    return calls


# --- the engine -----------------------------------------------------------------------


def test_eight_threads_on_one_engine_give_the_serial_results(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str], queries: list[str]
) -> None:
    calls = _engine_calls(embedder, reranker, documents, queries)
    serial = [call() for call in calls]
    _assert_all_equal(_run_in_threads(calls), serial)
    _assert_all_equal(_run_in_threads(calls[::-1]), serial[::-1])


def test_fifty_asyncio_tasks_on_one_engine_give_the_serial_results(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str], queries: list[str]
) -> None:
    """The engines' async methods, 50 tasks at once on one event loop (10 of each)."""
    pairs = [(queries[i % 2], d) for i, d in enumerate(documents)]
    jobs: list[tuple[Callable[[], Any], Callable[[], Awaitable[Any]]]] = []
    for k in range(TASKS // 5):
        part, query = documents[k % 4 :: 4], queries[k % 2]
        jobs += [
            (partial(embedder.embed_documents, part), partial(embedder.aembed_documents, part)),
            (
                partial(embedder.embed_queries, queries[k % 2 :]),
                partial(embedder.aembed_queries, queries[k % 2 :]),
            ),
            (partial(reranker.score, query, documents), partial(reranker.ascore, query, documents)),
            (partial(reranker.score_pairs, pairs[k:]), partial(reranker.ascore_pairs, pairs[k:])),
            (
                partial(reranker.rerank, documents[k], documents, top_n=3),
                partial(reranker.arerank, documents[k], documents, top_n=3),
            ),
        ]
    serial = [sync() for sync, _ in jobs]
    _assert_all_equal(asyncio.run(_gather([job for _, job in jobs])), serial)


def test_fifty_asyncio_tasks_running_the_sync_engine_in_threads(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str], queries: list[str]
) -> None:
    """The blocking calls through ``asyncio.to_thread``, as an application may wrap them."""
    calls = (_engine_calls(embedder, reranker, documents, queries) * 3)[:TASKS]
    serial = [call() for call in calls]
    concurrent = asyncio.run(_gather([partial(asyncio.to_thread, call) for call in calls]))
    _assert_all_equal(concurrent, serial)


# --- the adapters ---------------------------------------------------------------------


def _nodes(texts: list[str]) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.5) for i, t in enumerate(texts)
    ]


def _documents(texts: list[str]) -> list[Document]:
    return [Document(page_content=t, id=str(i)) for i, t in enumerate(texts)]


def test_eight_threads_on_each_adapter_give_the_serial_results(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str], queries: list[str]
) -> None:
    lc_emb, lc_cross = Qwen3Embeddings(engine=embedder), Qwen3CrossEncoder(engine=reranker)
    lc_rerank = LangChainRerank(engine=reranker, top_n=5)
    li_emb = Qwen3Embedding(engine=embedder, embed_batch_size=5)
    li_rerank = LlamaIndexRerank(engine=reranker, top_n=5)
    calls: list[Callable[[], Any]] = []
    for k in range(4):
        part, query = documents[k * 4 : k * 4 + 10], queries[k % 2]
        calls += [
            partial(lc_emb.embed_documents, part),
            partial(lc_emb.embed_query, documents[k]),
            partial(lc_rerank.compress_documents, _documents(part), query),
            partial(lc_cross.score, [(query, d) for d in part]),
            partial(li_emb.get_text_embedding_batch, part),
            partial(li_emb.get_query_embedding, documents[k]),
            partial(li_rerank.postprocess_nodes, _nodes(part), query_str=query),
        ]
    serial = [call() for call in calls]
    _assert_all_equal(_run_in_threads(calls), serial)


def test_fifty_asyncio_tasks_on_the_adapters_give_the_serial_results(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str], queries: list[str]
) -> None:
    lc_emb, lc_rerank = Qwen3Embeddings(engine=embedder), LangChainRerank(engine=reranker, top_n=4)
    li_emb = Qwen3Embedding(engine=embedder, embed_batch_size=4)
    li_rerank = LlamaIndexRerank(engine=reranker, top_n=4)
    jobs: list[tuple[Callable[[], Any], Callable[[], Awaitable[Any]]]] = []
    for k in range(8):
        part, query, text = documents[k : k + 9], queries[k % 2], documents[k]
        docs, nodes = _documents(part), _nodes(part)
        jobs += [
            (partial(lc_emb.embed_documents, part), partial(lc_emb.aembed_documents, part)),
            (partial(lc_emb.embed_query, text), partial(lc_emb.aembed_query, text)),
            (
                partial(lc_rerank.compress_documents, docs, query),
                partial(lc_rerank.acompress_documents, docs, query),
            ),
            (
                partial(li_emb.get_text_embedding_batch, part),
                partial(li_emb.aget_text_embedding_batch, part),
            ),
            (partial(li_emb.get_text_embedding, text), partial(li_emb.aget_text_embedding, text)),
            (partial(li_emb.get_query_embedding, text), partial(li_emb.aget_query_embedding, text)),
            (
                partial(li_rerank.postprocess_nodes, nodes, query_str=query),
                partial(li_rerank.apostprocess_nodes, nodes, query_str=query),
            ),
        ]
    jobs = jobs[:TASKS]
    serial = [sync() for sync, _ in jobs]
    _assert_all_equal(asyncio.run(_gather([job for _, job in jobs])), serial)


# --- one load for many adapters built at once -------------------------------------------


def _fresh_copy(source: Path, target: Path) -> Path:
    """The model at a path no other test has loaded: a cache entry of its own."""
    shutil.copytree(source, target, copy_function=link_or_copy)
    return target


def _decoder(engine: Any) -> Any:
    """The engine's torch decoder (a ``Qwen3Model``): the weights it runs."""
    return engine.loaded_model.base_model


def test_eight_threads_building_adapters_at_once_in_a_fresh_process_load_once(
    test_models: ModelPaths, tmp_path: Path
) -> None:
    """In a new process (nothing imported but the adapters), 8 threads each build adapters
    for the same two folders, under four spellings of each, and use them at the same moment:
    no thread fails (a first import of transformers from several threads at once used to
    raise "cannot import name 'AutoModel'"), each adapter builds its own engine, all of them
    on one copy of each model's weights, with the same results."""
    embedding = _fresh_copy(test_models.embedding, tmp_path / "embedding")
    reranker = _fresh_copy(test_models.reranker, tmp_path / "reranker")
    script = Path(__file__).with_name("concurrent_first_use.py")
    run = subprocess.run(
        [sys.executable, str(script), str(embedding), str(reranker)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {
        "errors": [],
        "engines": 2 * THREADS,
        "embedding_weights": 1,
        "reranker_weights": 1,
        "same_vectors": True,
        "same_scores": True,
    }


# --- a call stopped midway ----------------------------------------------------------------


class _Interrupt:
    """A forward hook on a real layer that raises ``error`` on its ``at``-th call."""

    def __init__(self, error: BaseException, at: int) -> None:
        self.error, self.at, self.calls = error, at, 0

    def __call__(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise self.error


@pytest.fixture
def hooked() -> Iterator[Callable[[torch.nn.Module, Any], None]]:
    """Registers forward hooks and removes them after the test, whatever happens."""
    handles: list[Any] = []

    def register(module: torch.nn.Module, hook: Any) -> None:
        handles.append(module.register_forward_hook(hook))

    yield register
    for handle in handles:
        handle.remove()


def test_keyboard_interrupt_midway_leaves_the_engines_usable(
    test_models: ModelPaths,
    documents: list[str],
    queries: list[str],
    hooked: Callable[[torch.nn.Module, Any], None],
) -> None:
    # A small token budget: each call runs several batches, and is stopped in the third.
    small_batches = TransformersOptions(device="cpu", max_batch_tokens=256)
    embedder = Qwen3Embedder(test_models.embedding, backend=small_batches)
    reranker = Qwen3Reranker(test_models.reranker, backend=small_batches)
    documents = documents[:12]
    want = embedder.embed_documents(documents), reranker.score(queries[0], documents)
    stops = _Interrupt(KeyboardInterrupt(), at=3), _Interrupt(KeyboardInterrupt(), at=3)
    hooked(_decoder(embedder).layers[1], stops[0])
    hooked(_decoder(reranker).layers[1], stops[1])
    with pytest.raises(KeyboardInterrupt):
        embedder.embed_documents(documents)
    with pytest.raises(KeyboardInterrupt):
        reranker.score(queries[0], documents)
    assert [s.calls for s in stops] == [3, 3]  # stopped in the middle of the call
    # The hooks stay, but fire no more: the same instances answer as before.
    assert np.array_equal(embedder.embed_documents(documents), want[0])
    assert np.array_equal(reranker.score(queries[0], documents), want[1])
    assert all(s.calls > 3 for s in stops)


def test_keyboard_interrupt_midway_leaves_the_adapters_usable(
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    documents: list[str],
    hooked: Callable[[torch.nn.Module, Any], None],
) -> None:
    lc_rerank = LangChainRerank(engine=reranker, top_n=None)
    li_emb = Qwen3Embedding(engine=embedder, embed_batch_size=4)
    want = (
        lc_rerank.compress_documents(_documents(documents), "gravity"),
        li_emb.get_text_embedding_batch(documents),
    )
    hooked(_decoder(reranker).layers[0], _Interrupt(KeyboardInterrupt(), at=2))
    hooked(_decoder(embedder).layers[0], _Interrupt(KeyboardInterrupt(), at=3))
    with pytest.raises(KeyboardInterrupt):
        lc_rerank.compress_documents(_documents(documents), "gravity")
    with pytest.raises(KeyboardInterrupt):
        li_emb.get_text_embedding_batch(documents)  # in its third batch of four texts
    _assert_all_equal(
        [
            lc_rerank.compress_documents(_documents(documents), "gravity"),
            li_emb.get_text_embedding_batch(documents),
        ],
        list(want),
    )


def _out_of_memory(rows_that_fit: int) -> Callable[[torch.nn.Module, Any, Any], None]:
    """A forward pre-hook failing as an allocator does on batches above ``rows_that_fit``."""

    def hook(module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        if kwargs["input_ids"].shape[0] > rows_that_fit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return hook


def test_out_of_memory_after_the_back_off_leaves_the_engines_usable(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, documents: list[str], queries: list[str]
) -> None:
    """Out of memory even on single inputs: the call fails with a MemoryError; the next
    call, with memory back, gives the results of before. Out of memory only on large
    batches: the call halves them and succeeds with the same results."""
    want = embedder.embed_documents(documents), reranker.score(queries[1], documents)
    modules = _decoder(embedder), _decoder(reranker)
    for rows, expected in [(0, MemoryError), (1, None)]:
        handles = [
            m.register_forward_pre_hook(_out_of_memory(rows), with_kwargs=True) for m in modules
        ]
        try:
            if expected is None:  # halved down to single rows: equal up to float rounding
                got = embedder.embed_documents(documents), reranker.score(queries[1], documents)
                for g, w in zip(got, want, strict=True):
                    np.testing.assert_allclose(g, w, atol=1e-5, rtol=0)
            else:
                with pytest.raises(expected):
                    embedder.embed_documents(documents)
                with pytest.raises(expected):
                    reranker.score(queries[1], documents)
        finally:
            for handle in handles:
                handle.remove()
        assert np.array_equal(embedder.embed_documents(documents), want[0])
        assert np.array_equal(reranker.score(queries[1], documents), want[1])
