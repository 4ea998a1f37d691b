"""Internal: token ids for embedding and reranking, built from the canonical prompts.

User text (queries, documents, instructions) is tokenised literally: a document that
contains ``<|im_end|>`` gets the characters' tokens, never the special token, so it cannot
close the prompt and answer for the model. Only the template's own special tokens are special.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tokenizers import Encoding, Tokenizer

from qwen3_core import prompts
from qwen3_core.document_windows import (
    DocumentBudget,
    DocumentTokens,
    DocumentWindows,
    document_windows,
)
from qwen3_core.errors import ModelKindError
from qwen3_core.json_files import read_json

TokenIds = np.ndarray  # one sequence: integer ids, 1-d
TRUNCATE = DocumentBudget()
"""Documents cut to whatever ``max_length`` leaves: the official truncation."""
_ENCODE_CHUNK = 512
# Characters tokenised per kept token before a long text is cut: most tokens span fewer.
_CHARS_PER_TOKEN = 12
# Characters that must follow the kept tokens when one pre-token word runs past them (an
# unbroken run of letters, spaces or punctuation, e.g. 'a' * 4_000_000): 64 times the longest
# Qwen3 token (128 bytes). A word's BPE merges change at most the last token or two before a
# cut (measured: within 115 characters of it, for runs of every kind), so tokens ending this
# far before the cut are those of the whole word.
_LOOKAHEAD_CHARS = 8192


@dataclass(frozen=True)
class RerankPrompt:
    """One reranker input: ``head + tail`` is the whole prompt.

    ``head`` (prefix, instruction and query) is the same for every document of a query, so a
    backend may run it once and reuse it; ``tail`` is the document and the suffix.
    """

    head: TokenIds
    tail: TokenIds

    @property
    def ids(self) -> TokenIds:
        return np.concatenate([self.head, self.tail])

    def __len__(self) -> int:
        return len(self.head) + len(self.tail)


@dataclass(frozen=True)
class Truncation:
    """How many inputs of one call were cut to fit ``max_length``."""

    truncated: int
    total: int


class LiteralTokenizer:
    """A checkpoint's tokenizer, read from its ``tokenizer.json``: encodes user text literally
    and template text with its special tokens.

    Built with ``LiteralTokenizer.from_folder``; the engine shares one per set of tokenizer
    files (``qwen3_core.checkpoints``), since parsing the 151k-token Qwen3 tokenizer takes
    about a second. It is parsed once: template text is split at its special tokens, and the
    pieces between them are encoded like user text.
    """

    FILES: ClassVar[tuple[str, ...]] = ("tokenizer.json", "tokenizer_config.json")
    """The files that define the tokenizer."""

    @classmethod
    def from_folder(cls, folder: Path) -> LiteralTokenizer:
        """The tokenizer of the checkpoint in ``folder``.

        Raises:
            ModelKindError: The folder has no readable ``tokenizer.json``, or its
                ``tokenizer_config.json`` names added tokens that ``tokenizer.json`` lacks.
        """
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ModelKindError(f"'{folder}' has no tokenizer.json (a fast tokenizer)")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust parser's own error types
            raise ModelKindError(f"'{path}' is not a readable tokenizer: {exc}") from exc
        config_path = folder / "tokenizer_config.json"
        settings = read_json(config_path) if config_path.is_file() else {}
        settings = settings if isinstance(settings, dict) else {}
        added = settings.get("added_tokens_decoder")
        for index, token in (added or {}).items() if isinstance(added, dict) else ():
            if not index.isdecimal():
                raise ModelKindError(
                    f"'{config_path}': added_tokens_decoder has the key {index!r}, which is "
                    "not a token id"
                )
            content = token.get("content") if isinstance(token, dict) else None
            if content is not None and tokenizer.token_to_id(content) != int(index):
                raise ModelKindError(
                    f"'{folder}': tokenizer_config.json names token {content!r} with id "
                    f"{index}, which tokenizer.json does not have"
                )
        pad = settings.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        pad_id = tokenizer.token_to_id(pad) if isinstance(pad, str) else None
        return cls(tokenizer, pad_token_id=pad_id)

    def __init__(self, tokenizer: Tokenizer, *, pad_token_id: int | None = None) -> None:
        """Takes ``tokenizer`` over: it is set to encode literally, once, here."""
        specials: dict[str, int] = {}
        for index, token in tokenizer.get_added_tokens_decoder().items():
            if not token.special:
                continue
            if token.lstrip or token.rstrip or token.single_word:
                # Splitting template text at the special tokens would then differ from the
                # tokenizer's own matching: such a tokenizer is not Qwen3's.
                raise ModelKindError(
                    f"the tokenizer's special token {token.content!r} strips or matches whole "
                    "words only: this is not a Qwen3 tokenizer"
                )
            specials[token.content] = index
        self._specials = specials
        self._special_pattern = re.compile(
            "|".join(re.escape(c) for c in sorted(specials, key=len, reverse=True))
        )
        tokenizer.no_truncation()
        tokenizer.no_padding()
        # Special-token matching off, set once before anyone can call: never toggled per
        # call, so concurrent callers cannot see each other's setting.
        tokenizer.encode_special_tokens = True
        self._literal = tokenizer
        self.pad_token_id = pad_token_id
        """The id of the checkpoint's padding token (None if it names none)."""

    @functools.cached_property
    def _max_token_chars(self) -> int:
        # The most characters one token can cover (128 for Qwen3: a run of spaces). A byte-
        # level token's string has one character per byte, and a text character has at least
        # one byte, so N tokens never cover more than N times this many characters. Only
        # very long texts need it, and reading the vocabulary costs 0.2 s of a cold start.
        return max(len(token) for token in self._literal.get_vocab())

    def __len__(self) -> int:
        """Tokens in the vocabulary, added tokens included."""
        return int(self._literal.get_vocab_size(with_added_tokens=True))

    def token_to_id(self, token: str) -> int | None:
        """The id of one token of the vocabulary, or None."""
        found: int | None = self._literal.token_to_id(token)
        return found

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary entry of ``token_id``, or None."""
        found: str | None = self._literal.id_to_token(token_id)
        return found

    def encode_template(self, text: str) -> list[int]:
        """Template text: its special tokens are special (the tokenizer's own matching: it
        splits the text at them and encodes the pieces between)."""
        ids: list[int] = []
        start = 0
        for match in self._special_pattern.finditer(text) if self._specials else ():
            if match.start() > start:
                ids.extend(
                    self._literal.encode(text[start : match.start()], add_special_tokens=False).ids
                )
            ids.append(self._specials[match.group()])
            start = match.end()
        if start < len(text):
            ids.extend(self._literal.encode(text[start:], add_special_tokens=False).ids)
        return ids

    def encode_literal(self, texts: Sequence[str], max_tokens: int | None = None) -> list[TokenIds]:
        """User text: every character is text, nothing is added. With ``max_tokens``, a
        longer text's ids stop after ``max_tokens + 1`` (enough to tell it was longer), and
        only a prefix of it is tokenised, so a 10 MB text costs what its head costs (see
        ``_encode_head`` for how long that prefix is and why its tokens are the text's)."""
        return [ids for ids, _ in self._encode_limited(texts, max_tokens)]

    def encode_literal_offsets(
        self,
        texts: Sequence[str],
        max_tokens: int | None = None,
        wanted: Callable[[int, TokenIds], bool] | None = None,
    ) -> list[tuple[TokenIds, np.ndarray | None]]:
        """``encode_literal`` with each token's (start, end) character offsets in its text,
        int64 (n, 2); the tokens of one character split over several share its offsets.
        With ``wanted``, only the texts for which ``wanted(index, ids)`` is true get them
        (the others None), read in the same pass."""
        out: list[tuple[TokenIds, np.ndarray | None]] = []
        for index, (ids, encoding) in enumerate(self._encode_limited(texts, max_tokens)):
            offsets = None
            if wanted is None or wanted(index, ids):
                offsets = np.asarray(encoding.offsets[: len(ids)], dtype=np.int64).reshape(-1, 2)
            out.append((ids, offsets))
        return out

    def _encode_limited(
        self, texts: Sequence[str], max_tokens: int | None
    ) -> Iterator[tuple[TokenIds, Encoding]]:
        # In chunks: an Encoding also holds token strings and offsets, many times the ids.
        for start in range(0, len(texts), _ENCODE_CHUNK):
            chunk = list(texts[start : start + _ENCODE_CHUNK])
            if max_tokens is None:
                for encoding in self._encode_batch(chunk):
                    yield np.asarray(encoding.ids, dtype=np.int32), encoding
                continue
            keep = max_tokens + 1
            cut = keep * _CHARS_PER_TOKEN
            encodings = self._encode_batch([t[:cut] for t in chunk])
            for text, encoding in zip(chunk, encodings, strict=True):
                if len(text) > cut and not self._prefix_is_exact(encoding, keep):
                    encoding = self._encode_head(text, keep, cut, encoding)
                yield np.asarray(encoding.ids[:keep], dtype=np.int32), encoding

    def _encode_batch(self, texts: list[str]) -> list[Encoding]:
        """Literal encodings; a panic of the tokenizer's Rust code (a ``BaseException`` that
        would get past every ``except Exception``) becomes a ValueError. The one known: the
        pre-tokeniser's regex engine gives up on a run of 10 million spaces, which the
        bounded prefixes above never reach."""
        try:
            encodings: list[Encoding] = self._literal.encode_batch(texts, add_special_tokens=False)
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
            raise ValueError(f"the tokenizer failed on an input text: {exc}") from None
        return encodings

    @staticmethod
    def _prefix_is_exact(encoding: Encoding, keep: int) -> bool:
        """Whether a cut text's first ``keep`` tokens are those of the whole text: only the
        last pre-token (word) can change at a cut, so the kept tokens must end at least one
        whole word before it."""
        words: list[int | None] = encoding.word_ids
        if len(words) <= keep:
            return False
        kept_word, last_word = words[keep - 1], words[-1]
        return kept_word is not None and last_word is not None and kept_word < last_word - 1

    @staticmethod
    def _prefix_is_settled(encoding: Encoding, keep: int, cut: int) -> bool:
        """Whether the first ``keep`` tokens end ``_LOOKAHEAD_CHARS`` before the cut: for the
        one long word that the cut runs through, its tokens that far before the cut no
        longer depend on where the word ends."""
        if len(encoding.ids) <= keep:
            return False
        kept_end: int = encoding.offsets[keep - 1][1]
        return kept_end + _LOOKAHEAD_CHARS <= cut

    def _encode_head(self, text: str, keep: int, cut: int, encoding: Encoding) -> Encoding:
        """Tokenise longer prefixes of ``text`` until its first ``keep`` tokens are sure.

        Exact when the kept tokens end a whole word before the cut (``_prefix_is_exact``), which
        is the case for any text made of words shorter than the cut. One word longer than that
        (``'a' * 4_000_000``, a page of spaces, CJK without punctuation) would otherwise be
        tokenised whole, in time and memory growing with its length (and a run of 10 million
        spaces makes the pre-tokeniser's regex engine panic): it stops once the kept tokens end
        ``_LOOKAHEAD_CHARS`` before the cut (``_prefix_is_settled``).

        The prefix never exceeds ``limit``: ``keep`` tokens cover at most ``keep`` times the
        longest token's characters, so at ``limit`` they are all there and end two lookaheads
        before the cut. For max_length 8192 that is 1.06 million characters, whatever the
        length of the text.
        """
        limit = keep * self._max_token_chars + 2 * _LOOKAHEAD_CHARS
        while True:
            found = len(encoding.ids)
            if found > keep:
                grown = 2 * cut
            else:  # too few tokens yet: aim past ``keep`` at the rate seen so far
                grown = max(2 * cut, (cut * keep * 5) // (4 * max(found, 1)) + _LOOKAHEAD_CHARS)
            cut = min(grown, limit)
            (encoding,) = self._encode_batch([text[:cut]])
            if (
                cut >= len(text)
                or cut >= limit
                or self._prefix_is_exact(encoding, keep)
                or self._prefix_is_settled(encoding, keep, cut)
            ):
                return encoding

    def single_token_id(self, token: str) -> int | None:
        """The id of ``token`` if it is encoded as exactly one token."""
        ids = self.encode_template(token)
        return ids[0] if len(ids) == 1 else None


class EmbeddingTokenizer:
    """Builds embedding-model inputs: text truncated to ``max_length - 1``, then ``<|endoftext|>``.

    The official Qwen3-Embedding tokenizer appends ``<|endoftext|>`` after truncation; the
    engine does the same itself, so the result does not depend on the tokenizer's
    post-processor and the last token is never cut off.
    """

    def __init__(self, tokenizer: LiteralTokenizer, max_length: int) -> None:
        eos = tokenizer.single_token_id(prompts.EMBEDDING_EOS_TOKEN)
        if eos is None:
            raise ValueError(
                f"the tokenizer has no single {prompts.EMBEDDING_EOS_TOKEN!r} token: "
                "this is not a Qwen3 tokenizer"
            )
        if max_length < 2:
            raise ValueError(
                f"max_length must be at least 2 (text + <|endoftext|>), got {max_length}"
            )
        self._tokenizer = tokenizer
        self._eos = np.asarray([eos], dtype=np.int32)
        self.max_length = max_length

    def check_query_room(self, instruction: str) -> None:
        """``check_prompt_room`` for the prompt ``Instruct: {instruction}\\nQuery:``."""
        self.check_prompt_room(prompts.embedding_query_text(instruction, ""))

    def check_prompt_room(self, prompt: str) -> None:
        """Raise ValueError unless a query after ``prompt`` keeps some of its own tokens: with
        ``max_length`` no longer than the prompt and ``<|endoftext|>``, every query would be
        cut to the same prompt, and so get the same vector."""
        (ids,) = self._tokenizer.encode_literal([prompt], max_tokens=self.max_length)
        overhead = len(ids) + 1
        if self.max_length <= overhead:
            size = overhead if len(ids) <= self.max_length else f"more than {self.max_length}"
            raise ValueError(
                f"max_length={self.max_length} leaves no room for the query: the query "
                f"prompt {prompt!r} and <|endoftext|> take {size} tokens"
            )

    def encode(self, texts: Sequence[str]) -> tuple[list[TokenIds], Truncation]:
        limit = self.max_length - 1
        out: list[TokenIds] = []
        truncated = 0
        for ids in self._tokenizer.encode_literal(texts, max_tokens=limit):
            if len(ids) > limit:
                truncated += 1
                ids = ids[:limit]
            out.append(np.concatenate([ids, self._eos]))
        return out, Truncation(truncated, len(out))


class RerankTokenizer:
    """Builds reranker inputs: ``prefix + (head + document)[:budget] + suffix``.

    Only the body is truncated, from its end, so the whole prompt fits ``max_length``; this is
    the official truncation (the body's tokens cut, then prefix and suffix added).
    """

    def __init__(self, tokenizer: LiteralTokenizer, max_length: int) -> None:
        self._tokenizer = tokenizer
        self.prefix = np.asarray(tokenizer.encode_template(prompts.RERANK_PREFIX), dtype=np.int32)
        self.suffix = np.asarray(tokenizer.encode_template(prompts.RERANK_SUFFIX), dtype=np.int32)
        overhead = (
            len(self.prefix)
            + len(self.suffix)
            + len(tokenizer.encode_literal([prompts.rerank_body_text("", "", "")])[0])
        )
        if max_length <= overhead:
            raise ValueError(
                f"max_length={max_length} leaves no room for text: the reranker prompt template "
                f"alone takes {overhead} tokens"
            )
        self.max_length = max_length
        self.body_budget = max_length - len(self.prefix) - len(self.suffix)
        yes = tokenizer.single_token_id(prompts.YES_TOKEN)
        no = tokenizer.single_token_id(prompts.NO_TOKEN)
        if yes is None or no is None:
            raise ValueError(
                'the reranker tokenizer does not encode "yes" and "no" as single tokens: '
                "this is not a Qwen3 reranker tokenizer"
            )
        self.yes_id = yes
        self.no_id = no

    def encode(
        self,
        pairs: Sequence[tuple[str, str]],
        instruction: str,
        budget: DocumentBudget = TRUNCATE,
    ) -> RerankInputs:
        """The prompts of ``pairs``: one per pair, or with ``budget.long_documents="chunk"``
        one per window of a document over the budget."""
        # Each distinct query's head is tokenised once and shared by its documents.
        heads: dict[str, TokenIds] = {}
        rooms: dict[str, int] = {}
        for query in dict.fromkeys(q for q, _ in pairs):
            head = self._tokenizer.encode_literal(
                [prompts.rerank_head_text(instruction, query)], max_tokens=self.body_budget
            )[0][: self.body_budget]
            heads[query] = np.concatenate([self.prefix, head])
            rooms[query] = self.body_budget - len(head)
        reads = max(
            (budget.read_tokens(budget.window_tokens(room)) for room in rooms.values()), default=0
        )
        # Offsets, for the characters each prompt holds, only of documents over the budget.
        encoded = self._tokenizer.encode_literal_offsets(
            [prompts.rerank_document_text(d) for _, d in pairs],
            max_tokens=reads,
            wanted=lambda i, ids: len(ids) > budget.window_tokens(rooms[pairs[i][0]]),
        )
        documents = [ids for ids, _ in encoded]
        lead = len(prompts.rerank_document_text(""))
        located = {
            i: DocumentTokens(
                text=pairs[i][1],
                ids=ids,
                offsets=np.clip(offsets - lead, 0, None),
                complete=len(ids) <= reads,
            )
            for i, (ids, offsets) in enumerate(encoded)
            if offsets is not None
        }
        # The windows of every chunked document, made side by side: one tokeniser call per
        # round for all of them.
        chunked = [
            i for i in located if budget.chunked and budget.window_tokens(rooms[pairs[i][0]]) > 0
        ]
        walked: dict[int, DocumentWindows] = dict(
            zip(
                chunked,
                document_windows(
                    [(located[i], budget.window_tokens(rooms[pairs[i][0]])) for i in chunked],
                    budget,
                    self._encode_documents,
                ),
                strict=True,
            )
        )
        inputs = _InputsBuilder()
        truncated = clipped = 0
        for index, ((query, text), ids) in enumerate(zip(pairs, documents, strict=True)):
            room = rooms[query]
            window = budget.window_tokens(room)
            head = heads[query]
            if index in walked:
                clipped += walked[index].clipped
                for chunk in walked[index].windows:
                    tail = np.concatenate([chunk.ids, self.suffix])
                    inputs.add(index, RerankPrompt(head, tail), chunk.span)
            elif index not in located:
                inputs.add(
                    index, RerankPrompt(head, np.concatenate([ids, self.suffix])), (0, len(text))
                )
            else:
                limit = budget.max_document_tokens
                truncated += limit is None or room < limit  # cut by max_length, not by request
                span = (0, located[index].character(window, end=True))
                inputs.add(
                    index, RerankPrompt(head, np.concatenate([ids[:window], self.suffix])), span
                )
        return inputs.build(len(pairs), truncated, clipped)

    def _encode_documents(self, texts: list[str]) -> list[tuple[TokenIds, np.ndarray]]:
        """Each text's tokens as the document of a prompt, and their character offsets in
        the text (the prompt's space before it counted as character 0)."""
        lead = len(prompts.rerank_document_text(""))
        encoded = self._tokenizer.encode_literal_offsets(
            [prompts.rerank_document_text(text) for text in texts]
        )
        return [
            (ids, np.clip(offsets - lead, 0, None))
            for ids, offsets in encoded
            if offsets is not None
        ]


@dataclass(frozen=True)
class RerankInputs:
    """The prompts for one call's (query, document) pairs: one per pair, or one per window of
    a chunked document (a pair's windows are consecutive)."""

    prompts: list[RerankPrompt]
    owners: np.ndarray
    """The pair of each prompt: int64 (len(prompts),), ascending."""
    spans: list[tuple[int, int]]
    """The (start, end) characters of its document that each prompt holds."""
    truncated: Truncation
    """Pairs whose document was cut to fit ``max_length`` (a cut asked for by
    ``max_document_tokens`` is not counted)."""
    clipped: int
    """Documents longer than ``max_chunks_per_document`` windows: their rest went unread."""


class _InputsBuilder:
    def __init__(self) -> None:
        self.prompts: list[RerankPrompt] = []
        self.owners: list[int] = []
        self.spans: list[tuple[int, int]] = []

    def add(self, owner: int, prompt: RerankPrompt, span: tuple[int, int]) -> None:
        self.prompts.append(prompt)
        self.owners.append(owner)
        self.spans.append(span)

    def build(self, pairs: int, truncated: int, clipped: int) -> RerankInputs:
        owners = np.asarray(self.owners, dtype=np.int64)
        return RerankInputs(self.prompts, owners, self.spans, Truncation(truncated, pairs), clipped)
