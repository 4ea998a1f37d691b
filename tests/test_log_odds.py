"""The log-odds logit("yes") - logit("no") beside P(yes) (exact against the official formula
for every checkpoint variant: tests/test_checkpoint_variants.py): what rankings sort by
(documents whose P(yes) is exactly 1.0 in float32 still rank apart), in both adapters'
metadata, and through the server backend.

The large log-odds come from a real model run: the tiny reranker with its "yes" lm_head row
moved so that every log-odds is five times the original (``sharpened_reranker_copy``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Reranker, ServerOptions
from qwen3_core.testing import ModelPaths, VariantPaths
from qwen3_core.testing.variants import sharpened_reranker_copy
from tests.options import CPU
from tests.reference import ReferenceReranker, official
from tests.servers import Fault, StandInServer

QUERY = "What is the capital of China?"


@pytest.fixture(scope="module")
def sharp(test_models: ModelPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sharpened") / "reranker"
    return sharpened_reranker_copy(test_models.reranker, target, factor=5.0)


@pytest.fixture(scope="module")
def sharp_reranker(sharp: Path) -> Qwen3Reranker:
    return Qwen3Reranker(sharp, backend=CPU)


@pytest.fixture(scope="module")
def sharp_official(sharp: Path, corpus: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return official(ReferenceReranker(sharp), QUERY, corpus)


@pytest.fixture(scope="module")
def saturated(sharp_official: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The corpus documents whose P(yes) is exactly 1.0 by the official formula, though their
    log-odds differ by more than the tolerance."""
    log_odds, p_yes = sharp_official
    indices = np.flatnonzero(p_yes == 1.0)
    assert len(indices) >= 3, "the sharpened model must saturate several documents"
    gaps = np.diff(np.sort(log_odds[indices]))
    assert gaps.min() > 1e-3 and np.ptp(log_odds[indices]) > 3
    return indices


def test_documents_whose_p_yes_is_one_rank_by_log_odds(
    sharp_reranker: Qwen3Reranker,
    sharp_official: tuple[np.ndarray, np.ndarray],
    saturated: np.ndarray,
    corpus: list[str],
) -> None:
    want_log_odds, want_p = sharp_official
    got = sharp_reranker.logits(QUERY, corpus)
    np.testing.assert_allclose(got, want_log_odds, atol=1e-4, rtol=0)
    scores = sharp_reranker.score(QUERY, corpus)
    np.testing.assert_allclose(scores, want_p, atol=1e-5, rtol=0)
    assert (scores[saturated] == np.float32(1.0)).all()  # P(yes) cannot tell them apart
    hits = sharp_reranker.rerank(QUERY, corpus)
    assert [h.index for h in hits] == np.argsort(-got, kind="stable").tolist()
    # The saturated documents, in the official log-odds' order, not in input order.
    by_log_odds = saturated[np.argsort(-want_log_odds[saturated])].tolist()
    assert [h.index for h in hits if h.index in saturated] == by_log_odds
    assert by_log_odds != sorted(by_log_odds)
    for hit in hits:
        assert hit.logit == float(got[hit.index]) and hit.score == float(scores[hit.index])
        assert hit.document == corpus[hit.index]
    top = sharp_reranker.rerank(QUERY, corpus, top_n=2)
    assert [h.index for h in top] == by_log_odds[:2]


def test_equal_log_odds_keep_input_order(
    sharp_reranker: Qwen3Reranker, saturated: np.ndarray, corpus: list[str]
) -> None:
    low, high = sorted(
        saturated[:2].tolist(), key=lambda i: sharp_reranker.logits(QUERY, [corpus[i]])[0]
    )
    docs = [corpus[low], corpus[high], corpus[low], corpus[high]]
    assert [h.index for h in sharp_reranker.rerank(QUERY, docs)] == [1, 3, 0, 2]


def test_async_forms_equal_the_sync_ones(sharp_reranker: Qwen3Reranker, corpus: list[str]) -> None:
    pairs = [(QUERY, d) for d in corpus[:6]]

    async def run() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        hits = await sharp_reranker.arerank(QUERY, corpus)
        return (
            await sharp_reranker.alogits(QUERY, corpus),
            await sharp_reranker.alogits_pairs(pairs),
            await sharp_reranker.ascore(QUERY, corpus),
            [h.index for h in hits],
        )

    log_odds, pair_log_odds, scores, order = asyncio.run(run())
    np.testing.assert_array_equal(log_odds, sharp_reranker.logits(QUERY, corpus))
    np.testing.assert_array_equal(pair_log_odds, sharp_reranker.logits_pairs(pairs))
    np.testing.assert_array_equal(scores, sharp_reranker.score(QUERY, corpus))
    assert order == [h.index for h in sharp_reranker.rerank(QUERY, corpus)]
    assert sharp_reranker.logits(QUERY, []).shape == (0,)
    assert asyncio.run(sharp_reranker.alogits_pairs([])).dtype == np.float32


def test_langchain_metadata_carries_the_log_odds(
    sharp_reranker: Qwen3Reranker, saturated: np.ndarray, corpus: list[str]
) -> None:
    from langchain_core.documents import Document

    from langchain_qwen3 import Qwen3CrossEncoder, Qwen3Rerank

    docs = [
        Document(page_content=d, id=f"doc-{i}", metadata={"n": i}) for i, d in enumerate(corpus)
    ]
    want = sharp_reranker.rerank(QUERY, corpus)
    rerank = Qwen3Rerank(engine=sharp_reranker, top_n=None)
    for got in (
        rerank.compress_documents(docs, QUERY),
        asyncio.run(rerank.acompress_documents(docs, QUERY)),
    ):
        assert [d.id for d in got] == [f"doc-{h.index}" for h in want]
        for out, hit in zip(got, want, strict=True):
            assert out.metadata == {
                "n": hit.index,
                "relevance_score": hit.score,
                "relevance_logit": hit.logit,
            }
            assert isinstance(out.metadata["relevance_logit"], float)
    saturated_docs = [d for d in got if d.metadata["n"] in saturated]
    assert {d.metadata["relevance_score"] for d in saturated_docs} == {1.0}
    assert len({d.metadata["relevance_logit"] for d in saturated_docs}) == len(saturated)
    assert all("relevance_logit" not in d.metadata for d in docs)  # inputs untouched
    # The threshold stays on P(yes).
    kept = Qwen3Rerank(engine=sharp_reranker, top_n=None, score_threshold=1.0)
    assert sorted(d.metadata["n"] for d in kept.compress_documents(docs, QUERY)) == sorted(
        saturated.tolist()
    )
    cross = Qwen3CrossEncoder(engine=sharp_reranker)
    pairs = [(QUERY, d) for d in corpus]
    np.testing.assert_array_equal(cross.score(pairs), sharp_reranker.score_pairs(pairs))


def test_llamaindex_metadata_carries_the_log_odds(
    sharp_reranker: Qwen3Reranker, saturated: np.ndarray, corpus: list[str]
) -> None:
    from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

    from llamaindex_qwen3 import Qwen3Rerank

    nodes = [
        NodeWithScore(
            node=TextNode(
                text=d, id_=f"n{i}", metadata={"n": i}, excluded_embed_metadata_keys=["n"]
            ),
            score=0.5,
        )
        for i, d in enumerate(corpus)
    ]
    want = sharp_reranker.rerank(QUERY, corpus)
    rerank = Qwen3Rerank(engine=sharp_reranker, top_n=len(corpus))
    for out in (
        rerank.postprocess_nodes(nodes, query_str=QUERY),
        asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY)),
    ):
        assert [n.node.node_id for n in out] == [f"n{h.index}" for h in want]
        for node, hit in zip(out, want, strict=True):
            assert node.score == hit.score
            assert node.node.metadata == {"n": hit.index, "relevance_logit": hit.logit}
            # Kept out of the text the models see.
            assert node.node.get_content(metadata_mode=MetadataMode.EMBED) == hit.document
            assert "relevance_logit" not in node.node.get_content(metadata_mode=MetadataMode.LLM)
    assert {n.score for n in out if n.node.metadata["n"] in saturated} == {1.0}
    assert all("relevance_logit" not in n.node.metadata for n in nodes)  # inputs untouched
    # Reranking the output again scores the same text, so gives the same result.
    again = rerank.postprocess_nodes(out, query_str=QUERY)
    assert [(n.node.node_id, n.node.metadata) for n in again] == [
        (n.node.node_id, n.node.metadata) for n in out
    ]
    assert again[0].node.excluded_llm_metadata_keys == ["relevance_logit"]
    keep = Qwen3Rerank(engine=sharp_reranker, top_n=1, keep_retrieval_score=True)
    (best,) = keep.postprocess_nodes(nodes, query_str=QUERY)
    assert best.node.metadata == {
        "n": want[0].index,
        "relevance_logit": want[0].logit,
        "retrieval_score": 0.5,
    }


@pytest.fixture(scope="module")
def sharp_server(test_models: ModelPaths, sharp: Path) -> Iterator[StandInServer]:
    stand_in = StandInServer(test_models.embedding, sharp).start()
    yield stand_in
    stand_in.stop()


def test_server_backend_returns_the_raw_log_odds(
    sharp: Path,
    sharp_server: StandInServer,
    sharp_reranker: Qwen3Reranker,
    saturated: np.ndarray,
    corpus: list[str],
) -> None:
    """The client asks /classify for the raw logit (use_activation: false), as vLLM's
    P(yes) would have rounded the saturated documents to 1.0 and lost their order."""
    with Qwen3Reranker(sharp, backend=ServerOptions(base_url=sharp_server.url)) as remote:
        want = sharp_reranker.logits(QUERY, corpus)
        np.testing.assert_allclose(remote.logits(QUERY, corpus), want, atol=1e-4, rtol=0)
        got = asyncio.run(remote.alogits(QUERY, corpus))
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
        hits = remote.rerank(QUERY, corpus)
        assert [h.index for h in hits] == [h.index for h in sharp_reranker.rerank(QUERY, corpus)]
        assert {h.score for h in hits if h.index in saturated} == {1.0}


def test_server_two_label_logits_are_differenced(
    test_variants: VariantPaths, sharp_server: StandInServer
) -> None:
    """A two-label conversion answers [score_no, score_yes]; the log-odds is their
    difference and P(yes) its sigmoid."""
    sharp_server.faults.append(
        Fault(
            200,
            b'{"data": [{"index": 0, "probs": [-3.0, 19.5]}, {"index": 1, "probs": [2.0, -0.5]}]}',
        )
    )
    # The first call asks again with the activation on (the softmax, for two labels), to
    # check that the server honours use_activation.
    softmax = torch.softmax(torch.tensor([[-3.0, 19.5], [2.0, -0.5]], dtype=torch.float64), 1)
    rows = [{"index": i, "probs": p} for i, p in enumerate(softmax.tolist())]
    sharp_server.faults.append(Fault(200, json.dumps({"data": rows}).encode()))
    folder = test_variants.rerankers["seq-cls-2"]
    with Qwen3Reranker(folder, backend=ServerOptions(base_url=sharp_server.url)) as remote:
        hits = remote.rerank("q", ["a", "b"])
    assert [(h.index, h.logit) for h in hits] == [(0, 22.5), (1, -2.5)]
    assert hits[0].score == 1.0
    assert hits[1].score == pytest.approx(float(torch.sigmoid(torch.tensor(-2.5))), abs=1e-7)
