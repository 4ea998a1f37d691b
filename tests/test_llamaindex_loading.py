"""Both LlamaIndex adapters: nothing is loaded or fetched at construction, and adapters on
one model, device and dtype share one copy of the weights."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llama_index.core.schema import NodeWithScore, TextNode

from llamaindex_qwen3 import Qwen3Embedding, Qwen3Rerank
from qwen3_core import Qwen3Reranker
from qwen3_core.testing import ModelPaths
from tests.model_loads import model_loads
from tests.options import CPU


@pytest.fixture
def loads(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[tuple[str, str]]]]:
    """Every real model load from here on, as (folder, kind), read from the line the
    engine's loader logs for each."""
    with caplog.at_level(logging.INFO, logger="qwen3_core"):
        yield lambda: [(folder, kind) for kind, folder in model_loads(caplog)]


def linked_copy(source: Path, target: Path) -> Path:
    """A model folder at a new path (hard links where possible): a separate cache entry."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)
    return target


def test_construction_loads_nothing_and_opens_no_socket(
    monkeypatch: pytest.MonkeyPatch,
    loads: Callable[[], list[tuple[str, str]]],
    test_models: ModelPaths,
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("construction must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    adapters = [
        Qwen3Embedding(),  # hub ids that are not downloaded here
        Qwen3Rerank(),
        Qwen3Embedding(model="Qwen/Qwen3-Embedding-8B", backend=CPU, dimensions=256),
        Qwen3Rerank(model="Qwen/Qwen3-Reranker-8B", top_n=5, keep_retrieval_score=True),
        Qwen3Embedding(model=test_models.embedding, backend=CPU),
        Qwen3Rerank(model=test_models.reranker, backend=CPU),
    ]
    assert not any(a.engine_loaded for a in adapters)
    assert loads() == []


def test_adapters_on_one_model_load_it_once(
    tmp_path: Path, loads: Callable[[], list[tuple[str, str]]], test_models: ModelPaths
) -> None:
    folder = linked_copy(test_models.embedding, tmp_path / "embedding")  # not loaded yet
    embeds = [Qwen3Embedding(model=folder, backend=CPU) for _ in range(2)]
    assert loads() == []
    vectors = [e.get_query_embedding("what is gravity") for e in embeds]
    # One load, though each adapter built its own engine.
    assert loads() == [(str(folder), "embedding")]
    assert embeds[0].engine is not embeds[1].engine and vectors[0] == vectors[1]


def test_adapters_reuse_weights_already_loaded(
    loads: Callable[[], list[tuple[str, str]]], reranker: Qwen3Reranker, test_models: ModelPaths
) -> None:
    # The session engine holds the reranker: an adapter on the same folder, device and
    # dtype takes its weights instead of loading its own.
    rerank = Qwen3Rerank(model=test_models.reranker, backend=CPU, top_n=1)
    node = NodeWithScore(node=TextNode(text="Gravity attracts bodies with mass."), score=0.5)
    (top,) = rerank.postprocess_nodes([node], query_str="what is gravity")
    assert loads() == [] and rerank.engine_loaded and rerank.engine is not reranker
    assert top.score == pytest.approx(
        reranker.score("what is gravity", [node.node.get_content()])[0], abs=1e-6
    )
