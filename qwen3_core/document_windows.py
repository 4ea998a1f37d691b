"""Internal: long documents for the reranker: the document part of each prompt has a token
budget, and a document over it is either cut to its first tokens or split into overlapping
windows, each scored as a document of its own, the best window's score standing for the
document.

A window is a span of the document's characters, and its tokens are that span's own: the
tokens the span gets when scored alone (with the space the prompt puts before a document).
Byte-level BPE does not tokenise a piece of a text as it tokenised that piece inside the
text (a window that starts or ends inside a word, a CJK run or an emoji sequence gets other
tokens, often more), so each window is tokenised on its own and shortened until its own
tokens fit the budget. The document's tokens only propose where windows end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from qwen3_core.defaults import CHUNK_OVERLAP, MAX_CHUNKS_PER_DOCUMENT
from qwen3_core.validation import check_int, check_optional_int

LongDocuments = Literal["truncate", "chunk"]
"""What happens to a document over the budget: ``"truncate"`` keeps its first tokens;
``"chunk"`` scores it window by window and keeps the best window's score."""
LONG_DOCUMENTS: tuple[LongDocuments, ...] = get_args(LongDocuments)

# A window's ends move back at most this many tokens to land next to a word that follows a
# space, where the window text alone has the tokens the document had there.
_WORD_START_SEARCH = 16

SpanEncoder = Callable[[list[str]], list[tuple[np.ndarray, np.ndarray]]]
"""Tokenises texts each as a whole document of a prompt: per text its token ids and each
token's (start, end) character offsets in the text (int64 (n, 2); the prompt's own space
before the text counts as character 0)."""


@dataclass(frozen=True)
class DocumentBudget:
    """How the document part of each reranker prompt is bounded (checked when made)."""

    max_document_tokens: int | None = None
    """Most tokens of a document in one prompt; None: whatever ``max_length`` leaves."""
    long_documents: LongDocuments = "truncate"
    """``"truncate"`` or ``"chunk"``: see ``LongDocuments``."""
    chunk_overlap: int = CHUNK_OVERLAP
    """Tokens shared by neighbouring windows; at most half a window, so that a small budget
    with the default overlap still advances."""
    max_chunks_per_document: int = MAX_CHUNKS_PER_DOCUMENT
    """Most windows scored per document; past them the rest of the document is not read."""

    def __post_init__(self) -> None:
        # The checks return plain ints (a NumPy integer is accepted), kept in place of the given.
        checked = {
            "max_document_tokens": check_optional_int(
                "max_document_tokens", self.max_document_tokens, minimum=1
            ),
            "chunk_overlap": check_int("chunk_overlap", self.chunk_overlap, minimum=0),
            "max_chunks_per_document": check_int(
                "max_chunks_per_document", self.max_chunks_per_document, minimum=1
            ),
        }
        if self.long_documents not in LONG_DOCUMENTS:
            raise ValueError(
                f"long_documents must be one of {', '.join(map(repr, LONG_DOCUMENTS))}, "
                f"got {self.long_documents!r}"
            )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def chunked(self) -> bool:
        return self.long_documents == "chunk"

    def window_tokens(self, room: int) -> int:
        """Document tokens per prompt when the template and query leave ``room``."""
        limit = self.max_document_tokens
        return room if limit is None else min(limit, room)

    def read_tokens(self, window: int) -> int:
        """Document tokens worth reading for windows of ``window`` tokens: all the windows
        may cover (chunked, with room for windows whose own tokens cover a few more of the
        document's than ``window``), or one window."""
        if not self.chunked:
            return window
        return self.max_chunks_per_document * window + _WORD_START_SEARCH

    def stride(self, window: int) -> int:
        """Tokens from one window's start to the next's."""
        return max(window - min(self.chunk_overlap, window // 2), 1)


@dataclass(frozen=True)
class DocumentTokens:
    """A document's leading tokens as the prompt has them: their ids and their character
    offsets in the document (``offsets[k]`` = (start, end) of token k; the tokens of one
    character split over several share its offsets)."""

    text: str
    ids: np.ndarray
    offsets: np.ndarray
    complete: bool
    """Whether the tokens reach the document's end (else more follow)."""

    def whole_token_boundary(self, k: int) -> bool:
        """Whether tokens k-1 and k meet between two characters, not inside one."""
        if k <= 0 or k >= len(self.ids):
            return True
        return bool(self.offsets[k - 1, 1] <= self.offsets[k, 0])

    def character(self, k: int, end: bool = False) -> int:
        """The character offset where token k starts, or (``end``) where token k-1 ends."""
        if k <= 0:
            return 0
        if not end:
            return int(self.offsets[k, 0])
        return (
            len(self.text) if self.complete and k >= len(self.ids) else int(self.offsets[k - 1, 1])
        )


@dataclass(frozen=True)
class Window:
    """One window of a chunked document: its characters and the tokens the model scores."""

    span: tuple[int, int]
    """(start, end) character offsets in the document."""
    ids: np.ndarray
    """The tokens of ``document[start:end]`` scored as a document alone: no more than the
    window's budget."""


@dataclass(frozen=True)
class DocumentWindows:
    """The windows of one document, in order."""

    windows: list[Window]
    clipped: bool
    """Whether the document ran past ``max_chunks_per_document`` windows (then only the
    first were made, and the rest of the document is not in any)."""


def document_windows(
    documents: Sequence[tuple[DocumentTokens, int]], budget: DocumentBudget, encode: SpanEncoder
) -> list[DocumentWindows]:
    """The windows of each (document, window budget in tokens).

    Windows follow each other through the document and together hold every character of it
    (up to ``max_chunks_per_document`` windows): each starts at or before the previous one's
    end, ``budget.chunk_overlap`` tokens before it (0: right at it). A window's ids are
    ``encode`` of its span, never cut: a span whose own tokens are over the budget is
    shortened (to before a word that follows a space where one is near) and tokenised
    again. The documents are walked side by side, so that each round tokenises the spans of
    all of them in one ``encode`` call.

    Raises:
        ValueError: A single character takes more tokens than the window budget.
    """
    walks = [_Walk(document, window, budget) for document, window in documents]
    active = [walk for walk in walks if not walk.done]
    while active:
        encoded = encode([walk.document.text[walk.start : walk.end] for walk in active])
        for walk, (ids, offsets) in zip(active, encoded, strict=True):
            walk.fit(ids, offsets)
        active = [walk for walk in active if not walk.done]
    return [DocumentWindows(walk.windows, walk.clipped) for walk in walks]


@dataclass
class _Walk:
    """One document's windows, made one after the other: ``start:end`` is the span being
    fitted to the budget."""

    document: DocumentTokens
    window: int
    budget: DocumentBudget
    start: int = 0
    end: int = 0
    windows: list[Window] = field(default_factory=list)
    clipped: bool = False
    done: bool = False
    count: int = field(init=False)
    """The document's tokens read, of which windows may be proposed."""

    def __post_init__(self) -> None:
        self.count = min(len(self.document.ids), self.budget.read_tokens(self.window))
        self._propose()

    def _propose(self) -> None:
        """The end of the window that starts at ``start``: where ``window`` of the
        document's tokens from there end (before a word after a space if one is near)."""
        document = self.document
        first = int(np.searchsorted(document.offsets[: self.count, 1], self.start, side="right"))
        if first >= self.count:  # the tokens read end before here: the rest is past the limit
            self.clipped = self.done = True
            return
        last = _snapped_end(document, first, min(first + self.window, self.count))
        self.end = max(document.character(last, end=True), self.start + 1)

    def fit(self, ids: np.ndarray, offsets: np.ndarray) -> None:
        """Take the span's own tokens as a window if they fit the budget, else shorten it."""
        if len(ids) > self.window:
            self.end = self.start + self._fitting_length(offsets)
            return
        self.windows.append(Window((self.start, self.end), ids))
        if self.end >= len(self.document.text):
            self.done = True
        elif len(self.windows) >= self.budget.max_chunks_per_document:
            self.clipped = self.done = True
        else:
            self.start = self._next_start(offsets, len(ids))
            self._propose()

    def _fitting_length(self, offsets: np.ndarray) -> int:
        """A shorter span (in characters from ``start``) that ends where the span's first
        ``window`` tokens end: before a word after a space if one is near, else between
        two whole characters. Its own tokens are tried next."""
        text, start, window = self.document.text, self.start, self.window
        for k in range(window, max(1, window - _WORD_START_SEARCH) - 1, -1):
            at = int(offsets[k, 0])
            if at > 0 and text[start + at] == " " and offsets[k - 1, 1] <= at:
                return at
        k = window
        while k > 1 and offsets[k - 1, 1] > offsets[k, 0]:  # tokens k-1, k split a character
            k -= 1
        at = int(offsets[k, 0])
        if at > 0:
            return at
        if self.end - start > 1:  # the first tokens cover the first character and more
            return 1
        raise ValueError(
            f"a chunked document's windows of {window} tokens cannot hold its character "
            f"{text[start]!r} (at offset {start}): scored alone, it takes more tokens than "
            "that; give a larger max_document_tokens (or max_length)"
        )

    def _next_start(self, offsets: np.ndarray, size: int) -> int:
        """Where the next window starts: ``chunk_overlap`` of this window's ``size`` tokens
        before its end, moved back to a word after a space if one is near (the space stays
        in this window, and the prompt puts one before the next), else to between two whole
        characters; always after this window's start and at or before its end."""
        overlap = min(self.budget.chunk_overlap, self.window // 2)
        if overlap == 0 or size < 2:
            return self.end
        text, start = self.document.text, self.start
        target = min(max(size - overlap, 1), size - 1)
        for k in range(target, max(1, target - _WORD_START_SEARCH) - 1, -1):
            at = start + int(offsets[k, 0])
            if (
                at > start
                and text[at] == " "
                and offsets[k - 1, 1] <= offsets[k, 0]
                and not text[at + 1 : at + 2].isspace()
            ):
                return at + 1
        k = target
        while k > 1 and offsets[k - 1, 1] > offsets[k, 0]:
            k -= 1
        later = [int(a) for a in offsets[k:, 0] if a > 0]
        return start + later[0] if later else self.end


def _snapped_end(document: DocumentTokens, begin: int, end: int) -> int:
    """The window's end, at or before ``end`` and after ``begin``: before a word after a space
    if one is near (or at the document's end), else a whole-token boundary."""
    if end >= len(document.ids) and document.complete:
        return end
    text = document.text
    for k in range(end, max(begin + 1, end - _WORD_START_SEARCH) - 1, -1):
        at = int(document.offsets[k, 0])
        if text[at : at + 1] == " " and document.whole_token_boundary(k):
            return k
    while end > begin + 1 and not document.whole_token_boundary(end):
        end -= 1
    return end
