"""Long documents: the per-prompt document budget (``max_document_tokens``) and chunked
scoring (``long_documents="chunk"``), against an independent reading of the tokenizer: each
window's prompt is its span's text scored alone, in every script, the windows hold every
character, the best window ranks the document and its span slices back to it, and the cost
is bounded."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from tokenizers import Tokenizer

from langchain_qwen3 import Qwen3Rerank as LangChainRerank
from llamaindex_qwen3 import Qwen3Rerank as LlamaIndexRerank
from qwen3_core import Qwen3Reranker, ServerOptions, TransformersOptions
from qwen3_core.document_windows import DocumentBudget
from qwen3_core.testing import ModelPaths
from qwen3_core.tokenization import LiteralTokenizer, RerankInputs, RerankTokenizer
from tests.options import CPU
from tests.servers import StandInServer

QUERY = "Which city is the capital of China?"
WINDOW = 40
SENTENCES = [
    "The committee met on Tuesday to discuss the budget for next year.",
    "Beijing is the capital of the People's Republic of China.",
    "北京是中华人民共和国的首都，也是全国的政治中心。",
    "Rain is expected over the weekend, with clearing skies by Monday (maybe).",
    "Emoji 😀🚀 and combining marks: e\u0301te\u0301 déjà vu.\n\nA new paragraph begins here.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Shanghai is the largest city in China by population.",
]
LONG = " ".join(SENTENCES[i % len(SENTENCES)] for i in range(30))


# Texts where windows start and end inside runs that byte-level BPE tokenises otherwise
# when cut: Chinese, Japanese and Thai put no spaces between words, an emoji sequence (ZWJ,
# skin tones, flags) is one run of many tokens, and code has digit runs and odd spacing.
SCRIPTS = {
    "chinese": (
        "北京是中华人民共和国的首都，是全国的政治中心、文化中心、国际交往中心、科技创新中心。"
        "北京历史悠久，有三千多年的建城史和八百多年的建都史。故宫、天坛和颐和园闻名世界。"
    ),
    "japanese": (
        "東京は日本の首都であり、世界有数の大都市です。江戸時代から政治の中心として栄え、"
        "現在は約千四百万人が暮らしています。ひらがなとカタカナと漢字が混ざった文です。"
    ),
    "thai": (
        "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทยและเป็นศูนย์กลางทางเศรษฐกิจการเมือง"
        "และวัฒนธรรมของประเทศมีประชากรมากกว่าสิบล้านคนแม่น้ำเจ้าพระยาไหลผ่านใจกลางเมือง"
    ),
    "emoji": (
        "👨\u200d👩\u200d👧\u200d👦👩🏽\u200d💻🏳\ufe0f\u200d🌈🇯🇵🇨🇳👍🏿❤\ufe0f\u200d🔥"
        "🧑🏻\u200d🤝\u200d🧑🏿👁\ufe0f\u200d🗨\ufe0f🐻\u200d❄\ufe0f"
    ),
    "code": (
        "def capital(country: str) -> str:\n"
        '    """Return the capital city of a country."""\n'
        '    table = {"China": "Beijing", "Japan": "Tokyo"}  # 54910283\n'
        "\tif country not in table:\n"
        "        raise KeyError(f'{country!r} ' + str(0x1F))\n"
        "    return table[country]\n\n"
    ),
}
SCRIPT_DOCUMENTS = {
    name: "".join(f"{text}{i}" for i in range(12)) for name, text in SCRIPTS.items()
}
DOCUMENTS = {
    **SCRIPT_DOCUMENTS,
    "prose": LONG,
    "one-word": "a" * 3000,  # one word longer than every window
    "whitespace": "line\n\n  indented   spaces\t\ttabs " * 30,
}


@functools.cache
def rerank_tokenizer(model: Path, max_length: int) -> RerankTokenizer:
    return RerankTokenizer(LiteralTokenizer.from_folder(model), max_length)


def windows_of(
    reranker: Qwen3Reranker, document: str, budget: DocumentBudget
) -> list[tuple[int, int]]:
    """The character spans of the windows the engine scores for ``document``."""
    return window_inputs(reranker, document, budget).spans


def window_inputs(reranker: Qwen3Reranker, document: str, budget: DocumentBudget) -> RerankInputs:
    """The prompts and spans of the windows the engine scores for ``document``."""
    tokenizer = rerank_tokenizer(reranker.model_path, reranker.max_length)
    return tokenizer.encode([(QUERY, document)], reranker.instruction, budget)


@functools.cache
def tokenizer_json(model: Path) -> Tokenizer:
    """The checkpoint's tokenizer.json, read straight (special tokens matched as text)."""
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.encode_special_tokens = True
    return tokenizer


def token_offsets(reranker: Qwen3Reranker, document: str) -> list[tuple[int, int]]:
    """Each token's character offsets in ``document``, read straight from tokenizer.json
    (the prompt puts one space before the document)."""
    encoding = tokenizer_json(reranker.model_path).encode(" " + document, add_special_tokens=False)
    return [(max(a - 1, 0), b - 1) for a, b in encoding.offsets]


CHUNK = DocumentBudget(max_document_tokens=WINDOW, long_documents="chunk", chunk_overlap=8)


@pytest.mark.parametrize("overlap", [0, 8])
@pytest.mark.parametrize("window", [8, 24, 64])
@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_every_window_is_its_span_scored_alone_and_they_cover_the_document(
    reranker: Qwen3Reranker, name: str, window: int, overlap: int
) -> None:
    """Each window's prompt is exactly the prompt of its span ``document[start:end]`` scored
    as a document of its own (so the window's score is the span's), within the budget; and
    the windows leave no character of the document out."""
    document = DOCUMENTS[name]
    budget = DocumentBudget(window, "chunk", chunk_overlap=overlap, max_chunks_per_document=10_000)
    inputs = window_inputs(reranker, document, budget)
    spans = inputs.spans
    assert len(spans) > 2 and not inputs.clipped
    alone = reranker.tokenize(QUERY, [document[a:b] for a, b in spans])
    head, suffix = frame(reranker)
    for (start, end), prompt, text_alone in zip(spans, inputs.prompts, alone, strict=True):
        passage = document[start:end]
        np.testing.assert_array_equal(prompt.ids, text_alone, err_msg=repr(passage))
        # Its document part, read straight from tokenizer.json, fits the budget uncut.
        own = document_tokens(reranker, passage)
        np.testing.assert_array_equal(prompt.ids[head : len(prompt.ids) - suffix], own)
        assert len(own) <= window
    covered = np.zeros(len(document), dtype=bool)
    for start, end in spans:
        assert start < end
        covered[start:end] = True
    assert covered.all(), f"characters in no window: {np.flatnonzero(~covered)[:10]}"
    assert all(a < c <= b for (a, b), (c, _) in itertools.pairwise(spans))  # in order


def test_prose_windows_start_and_end_at_words(reranker: Qwen3Reranker) -> None:
    """Where words are near, windows start at a word after a space (the prompt's own space
    stands for it, so the window has the tokens the document had there) and end before one."""
    spans = windows_of(reranker, LONG, replace(CHUNK, max_chunks_per_document=10_000))
    assert len(spans) > 2 and spans[0][0] == 0 and spans[-1][1] == len(LONG)
    for start, end in spans:
        assert start == 0 or (LONG[start - 1] == " " and LONG[start] != " "), start
        assert end == len(LONG) or LONG[end] == " ", end


@pytest.fixture(scope="module")
def chunking(test_models: ModelPaths) -> Iterator[dict[int, Qwen3Reranker]]:
    """Engines that chunk long documents, by their ``chunk_overlap``."""
    engines = {
        overlap: Qwen3Reranker(
            test_models.reranker, backend=CPU, long_documents="chunk", chunk_overlap=overlap
        )
        for overlap in (0, 64)
    }
    yield engines
    for engine in engines.values():
        engine.close()


@pytest.mark.parametrize("overlap", [0, 64])  # 64: half of each window here
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_each_hit_scores_as_its_span_alone(
    chunking: dict[int, Qwen3Reranker], reranker: Qwen3Reranker, name: str, overlap: int
) -> None:
    """The promise of ``RerankResult.span``: ``document[start:end]`` scored alone has the
    hit's log-odds, in every script, at every window size."""
    document = SCRIPT_DOCUMENTS[name]
    # The document and two of its tails: their windows fall elsewhere, and others win.
    documents = [document[k * len(document) // 4 :] for k in range(3)]
    for window in (24, 96):
        hits = chunking[overlap].rerank(QUERY, documents, max_document_tokens=window)
        passages = [hit.document[slice(*hit.span)] for hit in hits]
        assert any(hit.span != (0, len(hit.document)) for hit in hits)  # some were chunked
        alone = reranker.logits(QUERY, passages)
        for hit, passage, log_odds in zip(hits, passages, alone, strict=True):
            assert hit.logit == pytest.approx(float(log_odds), abs=1e-4), (window, passage)


def test_each_window_scores_as_its_text_alone(reranker: Qwen3Reranker) -> None:
    spans = windows_of(reranker, LONG, CHUNK)
    texts = [LONG[a:b] for a, b in spans]
    settings: dict[str, Any] = {
        "max_document_tokens": WINDOW,
        "long_documents": "chunk",
        "chunk_overlap": 8,
    }
    with Qwen3Reranker(reranker.model_path, **settings) as chunking:
        windows = chunking.tokenize(QUERY, [LONG])
        hit = chunking.rerank(QUERY, [LONG])[0]
    # The prompts: one per window, each exactly the prompt of its text scored on its own.
    alone = reranker.tokenize(QUERY, texts, max_document_tokens=WINDOW)
    assert len(windows) == len(spans) > 2
    for window, text_alone in zip(windows, alone, strict=True):
        np.testing.assert_array_equal(window, text_alone)
    # And its document part is the run of the document's own tokens that the span covers.
    offsets = token_offsets(reranker, LONG)
    document_ids = document_tokens(reranker, LONG)
    head, suffix = frame(reranker)
    for (start, end), window in zip(spans, windows, strict=True):
        first = next(k for k, (a, _) in enumerate(offsets) if a >= start - (start > 0))
        last = next(k for k, (_, b) in enumerate(offsets) if b >= end)
        np.testing.assert_array_equal(window[head:-suffix], document_ids[first : last + 1])
    # The document's log-odds are its best window's; its span is that window's.
    window_log_odds = reranker.logits(QUERY, texts, max_document_tokens=WINDOW)
    best = int(np.argmax(window_log_odds))
    assert hit.logit == pytest.approx(float(window_log_odds[best]), abs=1e-4)
    assert hit.span == spans[best] and hit.document[slice(*hit.span)] == texts[best]


def document_tokens(reranker: Qwen3Reranker, document: str) -> list[int]:
    """The document's token ids as the prompt has them (after its one space)."""
    tokenizer = tokenizer_json(reranker.model_path)
    ids: list[int] = tokenizer.encode(" " + document, add_special_tokens=False).ids
    return ids


def frame(reranker: Qwen3Reranker) -> tuple[int, int]:
    """Tokens before and after the document in a prompt for ``QUERY``."""
    empty = reranker.tokenize(QUERY, [""])[0]
    one = reranker.tokenize(QUERY, ["x"])[0]
    head = next(k for k, (a, b) in enumerate(zip(empty, one, strict=False)) if a != b)
    return head, len(empty) - head - 1  # an empty document is still its one space


def test_a_passage_past_the_first_window_ranks_the_document(reranker: Qwen3Reranker) -> None:
    """A document whose best passage sits after its first window: chunked, it ranks by that
    passage, and its span points at it; truncated, only its first window counts."""
    filler = " ".join(SENTENCES[i % 3] for i in range(12))  # past the first window
    candidates = [f"{filler} {sentence}" for sentence in SENTENCES[3:]]
    chunked = reranker.logits(QUERY, candidates, max_document_tokens=WINDOW, long_documents="chunk")
    truncated = reranker.logits(QUERY, candidates, max_document_tokens=WINDOW)
    gains = chunked - truncated
    assert (gains >= -1e-4).all()  # the first window is one of the windows
    best = int(np.argmax(gains))
    assert gains[best] > 0.05, "some passage after the first window must score higher"
    document = candidates[best]
    (hit,) = reranker.rerank(QUERY, [document], max_document_tokens=WINDOW, long_documents="chunk")
    assert hit.span[0] > 0
    passage = document[slice(*hit.span)]
    assert reranker.logits(QUERY, [passage], max_document_tokens=WINDOW)[0] == pytest.approx(
        hit.logit, abs=1e-4
    )
    # A short document scored between the long one's first window and its best window.
    middle = (truncated[best] + chunked[best]) / 2
    pool = [f"{s} {t}" for s in SENTENCES for t in SENTENCES]
    pool_log_odds = reranker.logits(QUERY, pool)
    rival = pool[int(np.argmin(np.abs(pool_log_odds - middle)))]
    rival_log_odds = float(reranker.logits(QUERY, [rival])[0])
    if not truncated[best] < rival_log_odds < chunked[best]:
        pytest.fail("no rival document scores between the two readings of the long one")
    pair = [rival, document]
    by_first_window = reranker.rerank(QUERY, pair, max_document_tokens=WINDOW)
    by_best_window = reranker.rerank(
        QUERY, pair, max_document_tokens=WINDOW, long_documents="chunk"
    )
    assert [h.index for h in by_first_window] == [0, 1]
    assert [h.index for h in by_best_window] == [1, 0]


def test_truncation_to_the_budget_is_the_official_cut(
    reranker: Qwen3Reranker, caplog: pytest.LogCaptureFixture
) -> None:
    """``max_document_tokens`` keeps the document's first tokens, the frame around them, as
    the official truncation does; asked for, it logs no truncation warning."""
    offsets = token_offsets(reranker, LONG)
    whole = reranker.tokenize(QUERY, [LONG])[0]
    cut = reranker.tokenize(QUERY, [LONG], max_document_tokens=WINDOW)[0]
    head, suffix = frame(reranker)
    assert len(cut) == head + WINDOW + suffix
    np.testing.assert_array_equal(cut[:head], whole[:head])
    np.testing.assert_array_equal(cut[head:-suffix], document_tokens(reranker, LONG)[:WINDOW])
    np.testing.assert_array_equal(cut[-suffix:], whole[-suffix:])
    with caplog.at_level(logging.WARNING, logger="qwen3_core"):
        (hit,) = reranker.rerank(QUERY, [LONG], max_document_tokens=WINDOW)
    assert hit.span == (0, offsets[WINDOW - 1][1])
    assert not caplog.records  # the cut was asked for


def test_budget_per_instance_and_per_call(test_models: ModelPaths, reranker: Qwen3Reranker) -> None:
    documents = [LONG, SENTENCES[1]]
    with Qwen3Reranker(
        test_models.reranker, max_document_tokens=WINDOW, long_documents="chunk"
    ) as chunking:
        assert (chunking.max_document_tokens, chunking.long_documents) == (WINDOW, "chunk")
        per_instance = chunking.logits(QUERY, documents)
        per_call = reranker.logits(
            QUERY, documents, max_document_tokens=WINDOW, long_documents="chunk"
        )
        np.testing.assert_allclose(per_instance, per_call, atol=1e-4, rtol=0)
        # A call's own settings win over the instance's.
        np.testing.assert_allclose(
            chunking.logits(QUERY, documents, long_documents="truncate", max_document_tokens=64),
            reranker.logits(QUERY, documents, max_document_tokens=64),
            atol=1e-4,
            rtol=0,
        )
        np.testing.assert_allclose(
            asyncio.run(chunking.alogits(QUERY, documents)), per_instance, atol=1e-4, rtol=0
        )
        hits = asyncio.run(chunking.arerank(QUERY, documents))
        assert [h.span for h in hits] == [h.span for h in chunking.rerank(QUERY, documents)]


def test_windows_share_one_batch_schedule(test_models: ModelPaths) -> None:
    """All windows of all documents go to the model in one schedule: the same forward passes
    as scoring the window texts themselves in one call. The budget holds every window in one
    batch, so per-document scoring would show as more passes."""
    reranker = Qwen3Reranker(
        test_models.reranker, backend=TransformersOptions(device="cpu", max_batch_tokens=65536)
    )
    documents = [LONG, LONG[500:], SENTENCES[0]]
    texts = [
        document[a:b] for document in documents for a, b in windows_of(reranker, document, CHUNK)
    ]
    forwards: list[int] = []
    hook = reranker.loaded_model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        reranker.logits(QUERY, documents, max_document_tokens=WINDOW, long_documents="chunk")
        chunked = len(forwards)
        forwards.clear()
        reranker.logits(QUERY, texts, max_document_tokens=WINDOW)
    finally:
        hook.remove()
    assert chunked == len(forwards) == 2  # the query's shared head, then one batch


def test_past_max_chunks_only_the_first_windows_count(
    test_models: ModelPaths, caplog: pytest.LogCaptureFixture
) -> None:
    budget = DocumentBudget(WINDOW, "chunk", chunk_overlap=8, max_chunks_per_document=3)
    with Qwen3Reranker(
        test_models.reranker,
        max_document_tokens=WINDOW,
        long_documents="chunk",
        chunk_overlap=8,
        max_chunks_per_document=3,
    ) as reranker:
        spans = windows_of(reranker, LONG, budget)
        assert len(spans) == 3 and spans[-1][1] < len(LONG) // 2
        huge = "word " * 2_000_000  # 10 MB: only the tokens of three windows are read
        with caplog.at_level(logging.WARNING, logger="qwen3_core"):
            hits = reranker.rerank(QUERY, [LONG, huge, SENTENCES[0]])
        warnings = [r for r in caplog.records if "max_chunks_per_document" in r.getMessage()]
        assert len(warnings) == 1 and "2 of 3" in warnings[0].getMessage()
        first_three = reranker.logits(
            QUERY, [LONG[a:b] for a, b in spans], long_documents="truncate"
        )
        long_hit = next(h for h in hits if h.index == 0)
        assert long_hit.logit == pytest.approx(float(first_three.max()), abs=1e-4)
        assert next(h for h in hits if h.index == 1).span[1] < 1000


def test_server_backend_scores_the_same_windows(
    test_models: ModelPaths, reranker: Qwen3Reranker
) -> None:
    stand_in = StandInServer(test_models.embedding, test_models.reranker).start()
    try:
        with Qwen3Reranker(
            test_models.reranker, backend=ServerOptions(base_url=stand_in.url)
        ) as remote:
            settings: dict[str, Any] = {"max_document_tokens": WINDOW, "long_documents": "chunk"}
            documents = [LONG, SENTENCES[2]]
            got = remote.rerank(QUERY, documents, **settings)
            want = reranker.rerank(QUERY, documents, **settings)
            assert [(h.index, h.span) for h in got] == [(h.index, h.span) for h in want]
            np.testing.assert_allclose(
                [h.logit for h in got], [h.logit for h in want], atol=1e-4, rtol=0
            )
    finally:
        stand_in.stop()


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"long_documents": "split"}, ValueError, "long_documents must be one of"),
        ({"max_document_tokens": 0}, ValueError, "max_document_tokens must be >= 1"),
        ({"max_document_tokens": "64"}, TypeError, "max_document_tokens must be an int"),
        ({"chunk_overlap": -1}, ValueError, "chunk_overlap must be >= 0"),
        # Says what is accepted: None is not.
        ({"chunk_overlap": "8"}, TypeError, "^chunk_overlap must be an int, got str$"),
        ({"chunk_overlap": None}, TypeError, "^chunk_overlap must be an int, got NoneType$"),
        ({"chunk_overlap": True}, TypeError, "^chunk_overlap must be an int, got bool$"),
        ({"max_chunks_per_document": 2.0}, TypeError, "must be an int, got float$"),
        ({"max_document_tokens": np.float64(64)}, TypeError, "an int or None, got float64$"),
        ({"max_chunks_per_document": 0}, ValueError, "max_chunks_per_document must be >= 1"),
    ],
)
def test_bad_settings_are_refused_by_name(
    test_models: ModelPaths,
    reranker: Qwen3Reranker,
    settings: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        Qwen3Reranker(test_models.reranker, **settings)
    per_call = {k: v for k, v in settings.items() if k in ("max_document_tokens", "long_documents")}
    if per_call.keys() == settings.keys():
        with pytest.raises(error, match=message):
            reranker.logits(QUERY, [LONG], **per_call)
    if error is ValueError:  # the adapters' fields, checked by pydantic or by the engine's rule
        (name,) = settings
        model = str(test_models.reranker)
        with pytest.raises(ValueError, match=name):
            LangChainRerank(model=model, **settings)
        with pytest.raises(ValueError, match=name):
            LlamaIndexRerank(model=model, **settings)


def test_numpy_integers_are_ints(test_models: ModelPaths, reranker: Qwen3Reranker) -> None:
    """A count read from a NumPy array is accepted wherever an int is, and acts as that int."""
    as_numpy = DocumentBudget(
        np.int64(WINDOW), "chunk", chunk_overlap=np.int32(8), max_chunks_per_document=np.uint8(3)
    )
    assert as_numpy == DocumentBudget(WINDOW, "chunk", chunk_overlap=8, max_chunks_per_document=3)
    fields = ("max_document_tokens", "chunk_overlap", "max_chunks_per_document")
    assert all(type(getattr(as_numpy, name)) is int for name in fields)
    documents = [LONG, SENTENCES[1], SENTENCES[0]]
    with Qwen3Reranker(
        test_models.reranker,
        backend=CPU,
        max_length=np.int64(reranker.max_length),
        long_documents="chunk",
        chunk_overlap=np.int64(8),
        max_chunks_per_document=np.int16(3),
    ) as engine:
        assert (engine.chunk_overlap, engine.max_chunks_per_document) == (8, 3)
        hits = engine.rerank(QUERY, documents, top_n=np.int64(2), max_document_tokens=np.int64(40))
    with Qwen3Reranker(
        test_models.reranker,
        backend=CPU,
        long_documents="chunk",
        chunk_overlap=8,
        max_chunks_per_document=3,
    ) as engine:
        want = engine.rerank(QUERY, documents, top_n=2, max_document_tokens=40)
    assert [(h.index, h.span) for h in hits] == [(h.index, h.span) for h in want]
    assert [h.logit for h in hits] == pytest.approx([h.logit for h in want], abs=1e-4)


def test_adapters_report_the_best_window(test_models: ModelPaths) -> None:
    settings: dict[str, Any] = {
        "max_document_tokens": WINDOW,
        "long_documents": "chunk",
        "chunk_overlap": 8,
    }
    texts = [LONG, SENTENCES[1]]
    with Qwen3Reranker(test_models.reranker, **settings) as engine:
        expected = {hit.document: hit.span for hit in engine.rerank(QUERY, texts)}
    model = str(test_models.reranker)
    documents = [Document(page_content=text) for text in texts]
    out = LangChainRerank(model=model, top_n=None, **settings).compress_documents(documents, QUERY)
    assert {d.page_content: d.metadata["relevance_span"] for d in out} == expected
    plain = LangChainRerank(model=model, top_n=None).compress_documents(documents, QUERY)
    assert all("relevance_span" not in d.metadata for d in plain)

    nodes = [NodeWithScore(node=TextNode(text=text)) for text in texts]
    llama = LlamaIndexRerank(model=model, top_n=2, **settings)
    for node in llama.postprocess_nodes(nodes, QueryBundle(QUERY)):
        text = node.node.get_content(metadata_mode=MetadataMode.EMBED)
        assert node.node.metadata["relevance_span"] == expected[text]
        assert "relevance_span" not in node.node.get_content(metadata_mode=MetadataMode.LLM)
