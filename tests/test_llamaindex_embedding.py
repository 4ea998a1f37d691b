"""Qwen3Embedding: LlamaIndex's BaseEmbedding over the engine, vector for vector."""

from __future__ import annotations

import asyncio
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from llama_index.core.base.embeddings.base import BaseEmbedding

from llamaindex_qwen3 import Qwen3Embedding
from qwen3_core import (
    DEFAULT_INSTRUCTION,
    ModelKindError,
    ModelNotFoundError,
    Qwen3Embedder,
    TransformersOptions,
)
from qwen3_core.testing import ModelPaths
from tests.options import CPU, on_cpu

TASK = "检索能回答用户查询的文档"


@pytest.fixture(scope="module")
def embed_model(embedder: Qwen3Embedder) -> Qwen3Embedding:
    return Qwen3Embedding(engine=embedder)


@pytest.fixture(scope="module")
def shaped(test_models: ModelPaths) -> Qwen3Embedding:
    # Built from the folder, as users do; the weights are the session engine's (load cache).
    return Qwen3Embedding(
        model=test_models.embedding, backend=CPU, query_instruction=TASK, dimensions=16
    )


@pytest.fixture
def calls(embedder: Qwen3Embedder, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Each call of the session engine's public methods from here on, sync and async: (kind,
    number of texts). The engine still does the work; this only watches."""
    seen: list[tuple[str, int]] = []
    for kind in ("documents", "queries"):
        for name in (f"embed_{kind}", f"aembed_{kind}"):
            real = getattr(embedder, name)

            def watched(texts: list[str], _real: Any = real, _kind: str = kind, **kw: Any) -> Any:
                seen.append((_kind, len(texts)))
                return _real(texts, **kw)

            monkeypatch.setattr(embedder, name, watched)
    return seen


@pytest.fixture
def model_threads(embedder: Qwen3Embedder) -> Iterator[list[int]]:
    """The thread of each forward pass of the session engine's model from here on (a torch
    forward hook on its public ``loaded_model``)."""
    threads: list[int] = []
    hook = embedder.loaded_model.register_forward_hook(
        lambda *_: threads.append(threading.get_ident())
    )
    yield threads
    hook.remove()


def test_is_a_llamaindex_embedding_with_a_large_batch(embed_model: Qwen3Embedding) -> None:
    assert isinstance(embed_model, BaseEmbedding)
    assert embed_model.class_name() == "Qwen3Embedding"
    assert embed_model.embed_batch_size == 256  # not LlamaIndex's 10
    assert embed_model.query_instruction == DEFAULT_INSTRUCTION


def test_texts_and_queries_equal_the_engine(
    embed_model: Qwen3Embedding, embedder: Qwen3Embedder, corpus: list[str], queries: list[str]
) -> None:
    texts = embed_model.get_text_embedding_batch(corpus)
    np.testing.assert_allclose(texts, embedder.embed_documents(corpus), atol=1e-5, rtol=0)
    one = embed_model.get_text_embedding(corpus[3])
    np.testing.assert_allclose(one, embedder.embed_documents([corpus[3]])[0], atol=1e-5, rtol=0)
    for query in queries:
        got = embed_model.get_query_embedding(query)
        # Queries get the instruction, texts do not.
        np.testing.assert_allclose(got, embedder.embed_queries([query])[0], atol=1e-5, rtol=0)
        assert np.abs(np.array(got) - embedder.embed_documents([query])[0]).max() > 1e-3
    assert all(isinstance(x, float) for x in one)


def test_custom_instruction_and_dimensions(
    shaped: Qwen3Embedding, embedder: Qwen3Embedder, queries: list[str], corpus: list[str]
) -> None:
    got = np.array(shaped.get_query_embedding(queries[0]))
    full = embedder.embed_queries([queries[0]], instruction=TASK)[0][:16]
    np.testing.assert_allclose(got, full / np.linalg.norm(full), atol=1e-5, rtol=0)
    assert len(shaped.get_text_embedding(corpus[0])) == 16


def test_batch_path_makes_one_engine_call_per_batch(
    embedder: Qwen3Embedder, calls: list[tuple[str, int]], corpus: list[str]
) -> None:
    model = Qwen3Embedding(engine=embedder, embed_batch_size=8)
    vectors = model.get_text_embedding_batch(corpus)
    assert calls == [
        ("documents", 8),
        ("documents", 8),
        ("documents", 2),
    ]
    np.testing.assert_allclose(vectors, embedder.embed_documents(corpus), atol=1e-5, rtol=0)


async def test_async_equals_sync_and_runs_off_the_event_loop(
    embedder: Qwen3Embedder,
    calls: list[tuple[str, int]],
    model_threads: list[int],
    corpus: list[str],
    queries: list[str],
) -> None:
    model = Qwen3Embedding(engine=embedder, embed_batch_size=8)
    loop_thread = threading.get_ident()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    try:
        query, text, batch = await asyncio.gather(
            model.aget_query_embedding(queries[0]),
            model.aget_text_embedding(corpus[0]),
            model.aget_text_embedding_batch(corpus),
        )
    finally:
        ticking.cancel()
    assert ticks > 1  # the loop kept running while the engine worked
    assert len(calls) == 5 and sorted(n for kind, n in calls if kind == "documents") == [1, 2, 8, 8]
    assert model_threads and all(thread != loop_thread for thread in model_threads)
    np.testing.assert_allclose(query, model.get_query_embedding(queries[0]), atol=1e-6, rtol=0)
    np.testing.assert_allclose(text, model.get_text_embedding(corpus[0]), atol=1e-6, rtol=0)
    np.testing.assert_allclose(batch, model.get_text_embedding_batch(corpus), atol=1e-6, rtol=0)


def test_ready_engine_fills_the_fields(embedder: Qwen3Embedder) -> None:
    model = Qwen3Embedding(engine=embedder)
    assert model.engine is embedder and model.engine_loaded
    assert model.model_name == str(embedder.model_path)
    assert model.backend == embedder.options
    assert model.backend == on_cpu()
    assert (model.dimensions, model.max_length) == (None, embedder.max_length)
    assert model.query_instruction == embedder.instruction
    # The adapter's own instruction is used per call, whatever the engine's.
    assert Qwen3Embedding(engine=embedder, query_instruction="x").query_instruction == "x"


def test_settings_beside_a_ready_engine_are_an_error(embedder: Qwen3Embedder) -> None:
    with pytest.raises(ValueError, match=r"engine= was given together with dimensions, max_len"):
        Qwen3Embedding(engine=embedder, dimensions=8, max_length=128)
    with pytest.raises(ValueError, match="model_name"):
        Qwen3Embedding(model="other/model", engine=embedder)
    with pytest.raises(TypeError, match="engine must be a Qwen3Embedder, got str"):
        Qwen3Embedding(engine="Qwen/Qwen3-Embedding-0.6B")  # type: ignore[arg-type]


def test_device_and_dtype_objects_become_plain_names(test_models: ModelPaths) -> None:
    backend = TransformersOptions(device=torch.device("cpu"), dtype=torch.float32)
    model = Qwen3Embedding(model=test_models.embedding, backend=backend)
    assert model.model_name == str(test_models.embedding)
    assert model.backend == TransformersOptions(device="cpu", dtype="float32")


def test_copies_rebuild_from_the_fields(
    shaped: Qwen3Embedding, embedder: Qwen3Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    want = shaped.get_query_embedding("what is gravity")  # a loaded engine is not pickled
    with caplog.at_level("WARNING"):
        clone = pickle.loads(pickle.dumps(shaped))
    assert not caplog.records  # LlamaIndex's "Removing unpickleable attribute" is not needed
    assert isinstance(clone, Qwen3Embedding) and not clone.engine_loaded
    assert clone.to_dict() == shaped.to_dict()
    np.testing.assert_allclose(clone.get_query_embedding("what is gravity"), want, atol=1e-6)


def test_dicts_rebuild_from_the_fields(shaped: Qwen3Embedding) -> None:
    restored = Qwen3Embedding.from_dict(shaped.to_dict())
    assert restored.to_dict() == shaped.to_dict() and not restored.engine_loaded
    assert restored.dimensions == 16 and restored.query_instruction == TASK


def test_bad_folder_fails_on_first_use_not_construction(
    tmp_path: Path, test_models: ModelPaths
) -> None:
    missing = Qwen3Embedding(model=tmp_path / "no-such-model", backend=CPU)
    assert not missing.engine_loaded
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        missing.get_query_embedding("q")
    wrong_kind = Qwen3Embedding(model=test_models.reranker, backend=CPU)
    with pytest.raises(ModelKindError, match="Qwen3Reranker"):
        wrong_kind.get_text_embedding_batch(["a", "b"])


async def test_bad_folder_fails_on_first_async_use(tmp_path: Path) -> None:
    missing = Qwen3Embedding(model=tmp_path / "no-such-model", backend=CPU)
    with pytest.raises(ModelNotFoundError):
        await missing.aget_text_embedding_batch(["a"])
