"""Long documents for the reranker: the document part of each prompt has a token budget, and a
document over it is either cut to its first tokens or split into overlapping windows, each
scored as a document of its own, the best window's score standing for the document."""

from __future__ import annotations

from dataclasses import dataclass
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
        check_optional_int("max_document_tokens", self.max_document_tokens, minimum=1)
        if self.long_documents not in LONG_DOCUMENTS:
            raise ValueError(
                f"long_documents must be one of {', '.join(map(repr, LONG_DOCUMENTS))}, "
                f"got {self.long_documents!r}"
            )
        check_int("chunk_overlap", self.chunk_overlap, minimum=0)
        check_int("max_chunks_per_document", self.max_chunks_per_document, minimum=1)

    @property
    def chunked(self) -> bool:
        return self.long_documents == "chunk"

    def window_tokens(self, room: int) -> int:
        """Document tokens per prompt when the template and query leave ``room``."""
        limit = self.max_document_tokens
        return room if limit is None else min(limit, room)

    def read_tokens(self, window: int) -> int:
        """Document tokens worth reading for windows of ``window`` tokens: all the windows
        may cover (chunked), or one window."""
        if not self.chunked:
            return window
        return window + (self.max_chunks_per_document - 1) * self.stride(window)

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


def window_spans(
    document: DocumentTokens, window: int, budget: DocumentBudget
) -> tuple[list[tuple[int, int]], bool]:
    """The character spans of the windows of a document over ``window`` tokens, and whether
    the document ran past ``budget.max_chunks_per_document`` windows (then only the first are
    returned).

    Windows start and end between whole tokens of the document and leave no token out
    between them. Where one is near, a window ends before a space and one after the first
    starts at a word after a space, without the space (the prompt puts one before any
    document): the window text alone then has the tokens the document had there.
    """
    count = min(len(document.ids), budget.read_tokens(window))
    spans: list[tuple[int, int]] = []
    begin = 0
    while True:
        end = _snapped_end(document, begin, min(begin + window, count))
        first = document.character(begin)
        if begin > 0 and document.text[first : first + 1] == " ":
            first += 1
        spans.append((first, document.character(end, end=True)))
        if end >= count:
            return spans, count < len(document.ids)
        if len(spans) == budget.max_chunks_per_document:
            return spans, True
        begin = _snapped_start(document, min(begin + budget.stride(window), end), floor=begin + 1)


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


def _snapped_start(document: DocumentTokens, start: int, floor: int) -> int:
    """The next window's first token: at or before ``start`` (so that no token is skipped)
    and after ``floor``; a word after a space if one is near, else a whole-token boundary."""
    text = document.text
    for k in range(start, max(floor, start - _WORD_START_SEARCH) - 1, -1):
        at = int(document.offsets[k, 0])
        if text[at : at + 1] == " " and at + 1 < len(text) and document.whole_token_boundary(k):
            return k
    k = start
    while k > floor and not document.whole_token_boundary(k):
        k -= 1
    return k
