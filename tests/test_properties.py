"""Property tests over random Unicode (lone surrogates, control characters, combining marks,
template tokens included) and random argument shapes: every call returns finite,
well-shaped results (unit vectors, probabilities) or raises the TypeError / ValueError that
an independent oracle predicts, naming the first bad argument or item."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from langchain_qwen3 import Qwen3Embeddings
from llamaindex_qwen3 import Qwen3Embedding
from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.testing import ModelPaths
from qwen3_core.tokenization import LiteralTokenizer

DIMENSION = 64
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
_PIECES = st.sampled_from(
    [
        "<|im_end|>",
        "<|endoftext|>",
        "<think>",
        "\x00",
        "\x1b[0m",
        "\u200b",
        "\ufeff",
        "\u202e",
        "e\u0301\u0302",
        "🙂",
        "👩\u200d👩\u200d👧",
        "🇨🇳",
        "北京",
        "，",
        "مرحبا",
        " ",
        "\n",
        "\r\n",
        "\t",
        "\U0010ffff",
        "x" * 40,
    ]
)
# Any code point that UTF-8 can encode (all but the surrogates), and the pieces above; then
# the same with a lone surrogate somewhere.
CLEAN_TEXT = st.lists(st.one_of(st.characters(codec="utf-8"), _PIECES), max_size=30).map("".join)
SURROGATE_TEXT = st.tuples(CLEAN_TEXT, _SURROGATE, CLEAN_TEXT).map("".join)
TEXT = st.one_of(CLEAN_TEXT, SURROGATE_TEXT)
NON_TEXT = st.one_of(
    st.none(),
    st.binary(max_size=4),
    st.integers(),
    st.floats(allow_nan=True),
    st.lists(st.text(max_size=3), max_size=2),
)
BAD_ITEM = st.one_of(SURROGATE_TEXT, NON_TEXT)


@st.composite
def text_lists(draw: st.DrawFn, max_size: int = 6) -> list[Any]:
    """A list of valid texts, a third of the time with one or two bad items put in."""
    items: list[Any] = draw(st.lists(CLEAN_TEXT, max_size=max_size))
    if draw(st.sampled_from([False, False, True])):
        for _ in range(draw(st.sampled_from([1, 2]))):
            items.insert(draw(st.integers(0, len(items))), draw(BAD_ITEM))
    return items


NOT_A_LIST = st.one_of(
    TEXT,  # a bare string
    st.binary(max_size=4),
    st.none(),
    st.integers(),
    st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
)


@st.composite
def list_arguments(draw: st.DrawFn) -> Any:
    """Mostly lists (two thirds of them valid), sometimes a tuple, sometimes no list at all."""
    shape = draw(st.sampled_from(["list"] * 6 + ["tuple", "other"]))
    if shape == "other":
        return draw(NOT_A_LIST)
    items = draw(text_lists())
    return tuple(items) if shape == "tuple" else items


CLEAN_LIST = st.lists(CLEAN_TEXT, max_size=8)
TEXT_LIST = list_arguments()


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def predicted_text_error(name: str, value: Any) -> tuple[type[Exception], str] | None:
    """The error check_text should give for a single text, or None."""
    if not isinstance(value, str):
        return TypeError, f"{name} must be a str"
    if _has_surrogate(value):
        return ValueError, f"{name} contains a lone surrogate"
    return None


def predicted_list_error(name: str, value: Any) -> tuple[type[Exception], str] | None:
    """The error a list-of-texts argument should give, or None: the shape, then the first
    non-str item, then (only when all are str) the first item with a lone surrogate."""
    if not isinstance(value, (list, tuple)):
        return TypeError, f"{name} must be a list of str"
    for index, item in enumerate(value):
        if not isinstance(item, str):
            return TypeError, f"{name}[{index}] must be a str, got {type(item).__name__}"
    for index, item in enumerate(value):
        if _has_surrogate(item):
            return ValueError, f"{name}[{index}] contains a lone surrogate"
    return None


def expect(call: Callable[[], Any], error: tuple[type[Exception], str] | None) -> Any | None:
    """The call's result when no error is predicted; else the predicted error, raised."""
    event("ok" if error is None else f"{error[0].__name__}")
    if error is None:
        return call()
    kind, message = error
    with pytest.raises(kind, match=f"^{re.escape(message)}"):
        call()
    return None


def check_embeddings(values: Any, n: int) -> None:
    array = np.asarray(values, dtype=np.float64)
    if n == 0:
        assert array.size == 0
        return
    assert array.shape == (n, DIMENSION) and np.isfinite(array).all()
    np.testing.assert_allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-5)


def check_scores(values: Any, n: int) -> None:
    array = np.asarray(values, dtype=np.float64)
    assert array.shape == (n,) and np.isfinite(array).all()
    assert ((array >= 0.0) & (array <= 1.0)).all()


@pytest.fixture(scope="module")
def embed_calls(embedder: Qwen3Embedder) -> dict[str, Callable[[Any], Any]]:
    """The list-embedding entry points, which all check their argument as ``texts``."""
    return {
        "engine": embedder.embed_documents,
        "langchain": Qwen3Embeddings(engine=embedder).embed_documents,
        "llamaindex": Qwen3Embedding(engine=embedder).get_text_embedding_batch,
    }


@pytest.mark.parametrize("api", ["engine", "langchain", "llamaindex"])
@SETTINGS
@given(value=TEXT_LIST)
def test_embedding_any_list(
    embed_calls: dict[str, Callable[[Any], Any]], api: str, value: Any
) -> None:
    result = expect(lambda: embed_calls[api](value), predicted_list_error("texts", value))
    if result is not None:
        check_embeddings(result, len(value))


@pytest.mark.parametrize("api", ["engine", "langchain", "llamaindex"])
@SETTINGS
@given(texts=CLEAN_LIST)
def test_embedding_any_valid_unicode(
    embed_calls: dict[str, Callable[[Any], Any]], api: str, texts: list[str]
) -> None:
    check_embeddings(embed_calls[api](texts), len(texts))


@SETTINGS
@given(queries=TEXT_LIST, instruction=st.one_of(st.none(), TEXT))
def test_queries_with_any_instruction(
    embedder: Qwen3Embedder, queries: Any, instruction: Any
) -> None:
    error = predicted_list_error("queries", queries)
    if error is None and instruction is not None:
        error = predicted_text_error("instruction", instruction)
    result = expect(lambda: embedder.embed_queries(queries, instruction=instruction), error)
    if result is not None:
        check_embeddings(result, len(queries))


@SETTINGS
@given(query=CLEAN_TEXT, documents=CLEAN_LIST)
def test_scoring_any_valid_unicode(
    reranker: Qwen3Reranker, query: str, documents: list[str]
) -> None:
    check_scores(reranker.score(query, documents), len(documents))


@SETTINGS
@given(
    query=st.sampled_from([True] * 4 + [False]).flatmap(lambda ok: CLEAN_TEXT if ok else BAD_ITEM),
    documents=TEXT_LIST,
)
def test_scoring_any_query_and_documents(
    reranker: Qwen3Reranker, query: Any, documents: Any
) -> None:
    error = predicted_text_error("query", query) or predicted_list_error("documents", documents)
    result = expect(lambda: reranker.score(query, documents), error)
    if result is not None:
        check_scores(result, len(documents))
        # rerank agrees: every document once, best first, the same scores.
        ranked = reranker.rerank(query, documents)
        assert sorted(r.index for r in ranked) == list(range(len(documents)))
        assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
        np.testing.assert_array_equal([r.score for r in ranked], result[[r.index for r in ranked]])


BAD_PAIR = st.one_of(
    st.tuples(CLEAN_TEXT, BAD_ITEM),
    st.tuples(BAD_ITEM, CLEAN_TEXT),
    st.tuples(CLEAN_TEXT, BAD_ITEM).map(list),
    st.lists(CLEAN_TEXT, max_size=3).filter(lambda x: len(x) != 2),  # the wrong length
    TEXT,
    NON_TEXT,
)


@st.composite
def pair_lists(draw: st.DrawFn) -> list[Any]:
    """(query, document) pairs, as tuples or lists, a third of the time with a bad one."""
    pairs: list[Any] = draw(st.lists(st.tuples(CLEAN_TEXT, CLEAN_TEXT), max_size=5))
    pairs = [list(p) if draw(st.booleans()) else p for p in pairs]
    if draw(st.sampled_from([False, False, True])):
        pairs.insert(draw(st.integers(0, len(pairs))), draw(BAD_PAIR))
    return pairs


PAIRS = st.sampled_from([True] * 6 + [False]).flatmap(
    lambda is_list: pair_lists() if is_list else st.one_of(TEXT, st.none(), st.integers())
)


def predicted_pairs_error(name: str, value: Any) -> tuple[type[Exception], str] | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return TypeError, f"{name} must be a list of (query, document) pairs"
    for index, pair in enumerate(value):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            return TypeError, f"{name}[{index}] must be a (query, document) pair"
        for position, role in enumerate(("query", "document")):
            if not isinstance(pair[position], str):
                return TypeError, f"{name}[{index}][{position}] (the {role}) must be a str"
    for index, pair in enumerate(value):
        for position in (0, 1):
            if _has_surrogate(pair[position]):
                return ValueError, f"{name}[{index}][{position}] contains a lone surrogate"
    return None


@SETTINGS
@given(pairs=PAIRS)
def test_scoring_any_pairs(reranker: Qwen3Reranker, pairs: Any) -> None:
    result = expect(lambda: reranker.score_pairs(pairs), predicted_pairs_error("pairs", pairs))
    if result is not None:
        check_scores(result, len(pairs))


# --- the bounded tokenisation of long words is exact ----------------------------------------

_UNIT_ALPHABETS = st.sampled_from(
    [
        "a",
        "ab",
        "etaoinshrdlu",
        "北京中国的是人大学",
        " ",
        " \t",
        "\n",
        "-",
        "=*/#!",
        "e\u0301",
        "🙂🎉",
        "абвгд",
        "ابتث",
        "กขคง",
    ]
)


@st.composite
def long_words(draw: st.DrawFn) -> str:
    """A word (one pre-token) of 9,000 to 20,000 characters: a random unit repeated, or
    random characters from one alphabet, after a few ordinary words or none."""
    alphabet = draw(_UNIT_ALPHABETS)
    length = draw(st.integers(9_000, 20_000))
    if draw(st.booleans()):
        unit = draw(st.text(alphabet=alphabet, min_size=1, max_size=7))
        word = (unit * (length // len(unit) + 1))[:length]
    else:
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        word = "".join(rng.choice(list(alphabet), size=length))
    head = draw(st.sampled_from(["", "Gravity pulls. ", "北京，", "x = 1; "]))
    tail = draw(st.sampled_from(["", " end.", "\n\nnext"]))
    return head + word + tail


@pytest.fixture(scope="module")
def literal(test_models: ModelPaths) -> LiteralTokenizer:
    """The embedding model's own tokenizer, read from its folder as the engine reads it."""
    return LiteralTokenizer.from_folder(test_models.embedding)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=long_words(), max_tokens=st.integers(1, 600))
def test_long_word_prefix_tokenisation_is_exact(
    literal: LiteralTokenizer, text: str, max_tokens: int
) -> None:
    """Only a bounded prefix of one long word is tokenised; its first tokens are the whole
    text's (the lookahead after them is far longer than any BPE merge reaches)."""
    (head,) = literal.encode_literal([text], max_tokens=max_tokens)
    (whole,) = literal.encode_literal([text])
    assert head.tolist() == whole[: max_tokens + 1].tolist()
