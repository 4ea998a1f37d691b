"""Qwen3Rerank: LlamaIndex's node postprocessor over the engine, score for score."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from llamaindex_qwen3 import Qwen3Rerank
from qwen3_core import (
    DEFAULT_INSTRUCTION,
    ModelKindError,
    ModelNotFoundError,
    Qwen3Embedder,
    Qwen3Reranker,
    TransformersOptions,
)
from qwen3_core.testing import ModelPaths
from tests.options import CPU, on_cpu

QUERY = "什么是重力？"


@pytest.fixture(scope="module")
def rerank(reranker: Qwen3Reranker) -> Qwen3Rerank:
    # (Built from a folder in test_llamaindex_pipeline.py and below, in the copy tests.)
    return Qwen3Rerank(engine=reranker, top_n=3)


def retrieved(texts: list[str]) -> list[NodeWithScore]:
    """Nodes as a retriever returns them, with made-up, decreasing retrieval scores."""
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 - i / 100)
        for i, t in enumerate(texts)
    ]


def test_is_a_llamaindex_postprocessor(rerank: Qwen3Rerank) -> None:
    assert isinstance(rerank, BaseNodePostprocessor)
    assert rerank.class_name() == "Qwen3Rerank"
    assert (rerank.top_n, rerank.instruction) == (3, DEFAULT_INSTRUCTION)


def test_scores_are_the_engines_best_first(
    rerank: Qwen3Rerank, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    nodes = retrieved(corpus[:8])
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    want = reranker.score(QUERY, corpus[:8])
    order = np.argsort(-want, kind="stable")[:3]
    assert [n.node.node_id for n in out] == [f"n{i}" for i in order]
    np.testing.assert_allclose([n.score for n in out], want[order], atol=1e-5, rtol=0)
    assert all(isinstance(n.score, float) for n in out)
    # The same through a QueryBundle.
    again = rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert [(n.node.node_id, n.score) for n in again] == [(n.node.node_id, n.score) for n in out]


def test_inputs_are_left_as_they_were(rerank: Qwen3Rerank, corpus: list[str]) -> None:
    nodes = retrieved(corpus[:5])
    before = [(n.node.node_id, n.score, dict(n.node.metadata)) for n in nodes]
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score, dict(n.node.metadata)) for n in nodes] == before
    assert not any(o is n for o in out for n in nodes)  # new NodeWithScore objects
    # Around copies of the same nodes, which carry the log-odds in their metadata.
    by_id = {n.node.node_id: n.node for n in nodes}
    for o in out:
        source = by_id[o.node.node_id]
        assert o.node is not source and o.node.get_content() == source.get_content()
        logit = o.node.metadata["relevance_logit"]
        assert isinstance(logit, float)
        assert o.node.metadata == {**source.metadata, "relevance_logit": logit}


def test_keep_retrieval_score(reranker: Qwen3Reranker, corpus: list[str]) -> None:
    keep = Qwen3Rerank(engine=reranker, top_n=8, keep_retrieval_score=True)
    nodes = retrieved(corpus[:8])
    out = keep.postprocess_nodes(nodes, query_str=QUERY)
    by_id = {n.node.node_id: n for n in nodes}
    for n in out:
        assert n.node.metadata["retrieval_score"] == by_id[n.node.node_id].score
        assert n.score == pytest.approx(reranker.score(QUERY, [n.node.get_content()])[0], abs=1e-5)
    # The input nodes keep their metadata: reranking them again scores the same text.
    assert all("retrieval_score" not in n.node.metadata for n in nodes)
    assert [n.score for n in keep.postprocess_nodes(nodes, query_str=QUERY)] == [
        n.score for n in out
    ]


def test_scores_the_embed_view_of_nodes_with_metadata(
    rerank: Qwen3Rerank, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    nodes = [
        NodeWithScore(
            node=TextNode(
                text=text,
                id_=f"m{i}",
                metadata={"title": f"note {i}", "file_path": f"/notes/{i}.md"},
                excluded_embed_metadata_keys=["file_path"],
            ),
            score=0.5,
        )
        for i, text in enumerate(corpus[:6])
    ]
    embed_view = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    assert embed_view[0] == f"title: note 0\n\n{corpus[0]}"  # title in, file_path out
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    want = reranker.score(QUERY, embed_view)
    got = {n.node.node_id: n.score for n in out}
    for node_id, score in got.items():
        assert score == pytest.approx(want[int(node_id[1:])], abs=1e-5)
    # ...and not the bare text, which scores differently.
    bare = reranker.score(QUERY, corpus[:6])
    assert np.abs(want - bare).max() > 1e-3


def test_top_n_larger_than_the_input(reranker: Qwen3Reranker, corpus: list[str]) -> None:
    many = Qwen3Rerank(engine=reranker, top_n=50)
    out = many.postprocess_nodes(retrieved(corpus[:4]), query_str=QUERY)
    assert len(out) == 4
    assert [n.score for n in out] == sorted((n.score for n in out), reverse=True)


def test_no_nodes(rerank: Qwen3Rerank) -> None:
    assert rerank.postprocess_nodes([], query_str=QUERY) == []


def test_missing_query_is_a_value_error(rerank: Qwen3Rerank, corpus: list[str]) -> None:
    with pytest.raises(ValueError, match="needs a query"):
        rerank.postprocess_nodes(retrieved(corpus[:2]))
    with pytest.raises(ValueError, match="needs a query"):
        rerank.postprocess_nodes([])


async def test_async_equals_sync(rerank: Qwen3Rerank, corpus: list[str]) -> None:
    nodes = retrieved(corpus)
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    got = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in got] == [(n.node.node_id, n.score) for n in sync]
    with pytest.raises(ValueError, match="needs a query"):
        await rerank.apostprocess_nodes(nodes)


def test_custom_instruction(reranker: Qwen3Reranker, corpus: list[str]) -> None:
    task = "检索能回答用户查询的文档"
    custom = Qwen3Rerank(engine=reranker, instruction=task, top_n=6)
    out = custom.postprocess_nodes(retrieved(corpus[:6]), query_str=QUERY)
    want = reranker.score(QUERY, corpus[:6], instruction=task)
    got = sorted(out, key=lambda n: n.node.node_id)
    np.testing.assert_allclose([n.score for n in got], want, atol=1e-5, rtol=0)


def test_ready_engine_fills_the_fields(reranker: Qwen3Reranker, embedder: Qwen3Embedder) -> None:
    rr = Qwen3Rerank(engine=reranker, top_n=2)
    assert rr.engine is reranker and rr.engine_loaded
    assert (rr.model, rr.backend) == (str(reranker.model_path), reranker.options)
    assert rr.backend == on_cpu(reranker=True)
    assert (rr.max_length, rr.instruction) == (reranker.max_length, reranker.instruction)
    with pytest.raises(ValueError, match="engine= was given together with backend"):
        Qwen3Rerank(engine=reranker, backend=TransformersOptions(device="cuda"))
    with pytest.raises(TypeError, match="engine must be a Qwen3Reranker, got Qwen3Embedder"):
        Qwen3Rerank(engine=embedder)  # type: ignore[arg-type]


def test_copies_rebuild_from_the_fields(rerank: Qwen3Rerank, corpus: list[str]) -> None:
    nodes = retrieved(corpus[:5])
    want = [(n.node.node_id, n.score) for n in rerank.postprocess_nodes(nodes, query_str=QUERY)]
    clone = pickle.loads(pickle.dumps(rerank))  # a loaded engine is not pickled
    assert isinstance(clone, Qwen3Rerank) and not clone.engine_loaded
    got = [(n.node.node_id, n.score) for n in clone.postprocess_nodes(nodes, query_str=QUERY)]
    assert got == want
    assert clone.to_dict() == rerank.to_dict()


def test_dicts_rebuild_from_the_fields(rerank: Qwen3Rerank) -> None:
    restored = Qwen3Rerank.from_dict(rerank.to_dict())
    assert restored.to_dict() == rerank.to_dict()
    assert not restored.engine_loaded


def test_bad_folder_fails_on_first_use_not_construction(
    tmp_path: Path, test_models: ModelPaths, corpus: list[str]
) -> None:
    missing = Qwen3Rerank(model=tmp_path / "no-such-model", backend=CPU)
    assert not missing.engine_loaded
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        missing.postprocess_nodes(retrieved(corpus[:2]), query_str=QUERY)
    wrong_kind = Qwen3Rerank(model=test_models.embedding, backend=CPU)
    with pytest.raises(ModelKindError, match="Qwen3Embedder"):
        wrong_kind.postprocess_nodes(retrieved(corpus[:2]), query_str=QUERY)
