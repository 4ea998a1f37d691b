"""Internal (import its public names from ``qwen3_core``): ``Qwen3Reranker``: Qwen3-Reranker's
yes/no judgement as a relevance score P(yes), and its log-odds logit("yes") - logit("no"), which
ranks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from qwen3_core import prompts
from qwen3_core.backend_options import BackendChoice, backend_options
from qwen3_core.backends.base import AsyncRerankBackend, RerankBackend
from qwen3_core.backends.registry import open_model
from qwen3_core.batching import unique_with_inverse
from qwen3_core.defaults import (
    CHUNK_OVERLAP,
    DEFAULT_RERANKER_MODEL,
    MAX_CHUNKS_PER_DOCUMENT,
    MAX_LENGTH,
    MIN_MAX_LENGTH,
)
from qwen3_core.document_windows import DocumentBudget, LongDocuments
from qwen3_core.engine import EngineBase, check_finite, logger, warn_truncation
from qwen3_core.hub import HubOptions, ModelSource
from qwen3_core.tokenization import RerankInputs, RerankTokenizer
from qwen3_core.validation import (
    check_int,
    check_optional_int,
    check_pairs,
    check_text,
    check_texts,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True)
class RerankResult:
    """One reranked document."""

    index: int
    """Position of the document in the input list."""
    score: float
    """P(yes): the model's probability that the document meets the query."""
    document: str
    """The document text."""
    logit: float
    """The log-odds logit("yes") - logit("no"), of which ``score`` is the sigmoid: what the
    ranking sorts by, as it still tells apart documents whose P(yes) rounds to 1.0."""
    span: tuple[int, int]
    """The (start, end) character offsets of the part of the document the score comes from:
    ``document[start:end]``. The whole document; its first tokens when it was cut to the
    budget; the best window when a long document was scored window by window."""


class RerankCall(TypedDict, total=False):
    """What one scoring call may set for itself, as keyword arguments of ``score``,
    ``logits``, ``rerank``, their ``*_pairs`` and async forms, and ``tokenize``. A setting left
    out, or given as None, is the engine's."""

    instruction: str | None
    """The task in the prompt."""
    max_document_tokens: int | None
    """Most tokens of a document in one prompt."""
    long_documents: LongDocuments | None
    """``"truncate"`` or ``"chunk"``: what happens to a document over the budget."""


@dataclass(frozen=True)
class _CallSettings:
    """One call's settings, checked and resolved against the engine's."""

    task: str
    budget: DocumentBudget


@dataclass(frozen=True)
class _Judged:
    """The log-odds of each pair and the span of its document they come from."""

    log_odds: np.ndarray
    spans: list[tuple[int, int]]


def p_yes(log_odds: np.ndarray) -> np.ndarray:
    """sigmoid(log_odds) as float32, without overflow at either end: exp only ever sees
    -|x|, and the sum is formed in float64 so that only the final rounding is lost."""
    x = np.asarray(log_odds, dtype=np.float64)
    small = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + small), small / (1.0 + small)).astype(np.float32)


def _pairs(query: str, documents: Sequence[str]) -> list[tuple[str, str]]:
    """``query`` with each document, both checked before any model work."""
    check_text("query", query)
    return [(query, document) for document in check_texts("documents", documents)]


class Qwen3Reranker(EngineBase[RerankBackend]):
    """Scores (query, document) pairs with a Qwen3-Reranker model.

    The prompt is the official one (system turn, ``<Instruct>/<Query>/<Document>`` user turn,
    empty think block); the score is the softmax over the "no" and "yes" logits at the last
    position, P(yes) in [0, 1], the sigmoid of the log-odds logit("yes") - logit("no")
    (``logits``). Rankings sort by the log-odds, which still differ where P(yes) rounds to
    1.0. Every checkpoint variant in circulation scores exactly (tied or untied causal LMs,
    ``*-seq-cls`` conversions, sentence-transformers cross-encoders), and one that cannot is
    refused before any weights are read (see docs/engine.md).

    ```python
    from qwen3_core import Qwen3Reranker, TransformersOptions

    reranker = Qwen3Reranker(
        "Qwen/Qwen3-Reranker-0.6B", backend=TransformersOptions(device="cuda")
    )
    hits = reranker.rerank("What is the capital of China?", documents, top_n=3)
    ```

    Args:
        model: Hugging Face hub id or local folder of a Qwen3-Reranker checkpoint.
        backend: Where the model runs: ``"transformers"`` (in this process, the default),
            ``"openvino"``, ``"vllm"``, or the options of one: ``TransformersOptions(device=...,
            dtype=..., quantization=..., share_prefix=...)``, ``OpenVINOOptions(...)`` (CPU,
            float32), ``VllmOptions(tensor_parallel_size=...)``,
            ``ServerOptions(base_url=...)`` (vLLM servers; needs no torch).
        instruction: The task in the prompt; each call may give its own.
        max_length: Longest prompt in tokens; a longer document is cut (or, with
            ``long_documents="chunk"``, split into windows), the prompt's frame kept.
        max_document_tokens: Most tokens of a document in one prompt (the budget that
            vLLM's ``max_tokens_per_doc`` and hosted rerank APIs offer); None: whatever
            ``max_length`` leaves after the template and query. Each call may give its own.
        long_documents: What happens to a document over the budget: ``"truncate"`` scores
            its first tokens; ``"chunk"`` scores it in overlapping windows of the budget, the
            prompt's frame around each, and keeps the best window's score, whose characters
            ``RerankResult.span`` gives. Each call may give its own.
        chunk_overlap: Tokens shared by neighbouring windows (at most half a window).
        max_chunks_per_document: Most windows scored per document; of a longer document only
            the first windows are scored, with one warning per call.
        revision: For a hub id: the branch, tag or commit to download.
        token: For a hub id: the access token (True: the one saved by ``hf auth login``).
        cache_dir: For a hub id: where downloads are kept.
        local_files_only: For a hub id: use only what is already downloaded.
        source: ``"huggingface"`` or ``"modelscope"``; None: ModelScope when
            ``QWEN3_RAG_USE_MODELSCOPE=1``, else the Hugging Face Hub.

    Raises:
        ModelKindError: The checkpoint is not a Qwen3-Reranker that can be scored exactly.
        ModelNotFoundError: The model is neither a folder nor a hub id that can be fetched.
        ValueError: A setting is out of range, or the device is not available.
        TypeError: An unknown keyword argument.
        ImportError: The backend's libraries are not installed.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_RERANKER_MODEL,
        *,
        backend: BackendChoice = "transformers",
        instruction: str = prompts.DEFAULT_INSTRUCTION,
        max_length: int = MAX_LENGTH,
        max_document_tokens: int | None = None,
        long_documents: LongDocuments = "truncate",
        chunk_overlap: int = CHUNK_OVERLAP,
        max_chunks_per_document: int = MAX_CHUNKS_PER_DOCUMENT,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        source: ModelSource | None = None,
    ) -> None:
        self._backend_or_none = None
        options = backend_options(backend)
        self.instruction = check_text("instruction", instruction)
        self.max_length = check_int("max_length", max_length, minimum=MIN_MAX_LENGTH["reranker"])
        self._budget = DocumentBudget(
            max_document_tokens, long_documents, chunk_overlap, max_chunks_per_document
        )
        opened = open_model(
            model,
            "reranker",
            options,
            max_length=self.max_length,
            hub=HubOptions(revision, token, cache_dir, local_files_only, source),
        )
        self._take(opened)
        self._tokenizer = RerankTokenizer(opened.checkpoint.tokenizer, self.max_length)
        yes_id, no_id = opened.checkpoint.score_token_ids()
        self._backend_or_none = opened.reranker(
            os.fspath(model), max_length=self.max_length, yes_id=yes_id, no_id=no_id
        )

    @property
    def max_document_tokens(self) -> int | None:
        """Most tokens of a document in one prompt, unless a call says otherwise (None:
        whatever ``max_length`` leaves)."""
        return self._budget.max_document_tokens

    @property
    def long_documents(self) -> LongDocuments:
        """``"truncate"`` or ``"chunk"``, unless a call says otherwise."""
        return self._budget.long_documents

    @property
    def chunk_overlap(self) -> int:
        """Tokens shared by neighbouring windows of a chunked document."""
        return self._budget.chunk_overlap

    @property
    def max_chunks_per_document(self) -> int:
        """Most windows scored per chunked document."""
        return self._budget.max_chunks_per_document

    def tokenize(
        self, query: str, documents: Sequence[str], **call: Unpack[RerankCall]
    ) -> list[np.ndarray]:
        """The token ids of each prompt as the model sees it by ``score``: the official
        template, the document cut to its budget; in chunked mode one prompt per window
        of each document, documents in input order. ``call``: as ``logits``.

        Raises:
            TypeError: ``query`` is not a str or ``documents`` not a list of str.
        """
        settings = self._settings(call)
        inputs = self._tokenizer.encode(_pairs(query, documents), settings.task, settings.budget)
        return [prompt.ids for prompt in inputs.prompts]

    def score(self, query: str, documents: Sequence[str], **call: Unpack[RerankCall]) -> np.ndarray:
        """P(yes) of each document for ``query``: float32 (len(documents),), input order;
        the arguments are ``logits``'."""
        return p_yes(self.logits(query, documents, **call))

    def score_pairs(
        self, pairs: Sequence[tuple[str, str]], **call: Unpack[RerankCall]
    ) -> np.ndarray:
        """P(yes) of each (query, document) pair: float32 (len(pairs),), input order; the
        arguments are ``logits_pairs``'."""
        return p_yes(self.logits_pairs(pairs, **call))

    def logits(
        self, query: str, documents: Sequence[str], **call: Unpack[RerankCall]
    ) -> np.ndarray:
        """The log-odds logit("yes") - logit("no") of each document for ``query``.

        ``score`` is their sigmoid. Unlike P(yes), which rounds to exactly 1.0 in float32
        once the log-odds pass about 17, they keep confident documents apart.

        Args:
            query: The query the documents are judged against.
            documents: The documents to judge.
            **call: This call's own settings (``RerankCall``): ``instruction``,
                ``max_document_tokens``, ``long_documents``; each left out or None is the
                engine's. Chunked, a document's log-odds are its best window's.

        Returns:
            float32 array of shape (len(documents),), in input order.

        Raises:
            TypeError: ``query`` or ``instruction`` is not a str, ``documents`` not a list
                of str, or a setting is not one of ``RerankCall``'s.
            ValueError: A budget setting is out of range.
            FloatingPointError: The model produced NaN or inf.
        """
        return self._judge(_pairs(query, documents), self._settings(call)).log_odds

    def logits_pairs(
        self, pairs: Sequence[tuple[str, str]], **call: Unpack[RerankCall]
    ) -> np.ndarray:
        """The log-odds logit("yes") - logit("no") of each (query, document) pair, each
        judged on its own: float32 (len(pairs),), input order; ``score_pairs`` is their
        sigmoid. ``call``: as ``logits``.

        Raises:
            TypeError: ``pairs`` is not a list of (str, str), or a setting is wrong.
            ValueError: A budget setting is out of range.
            FloatingPointError: The model produced NaN or inf.
        """
        return self._judge(check_pairs("pairs", pairs), self._settings(call)).log_odds

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        **call: Unpack[RerankCall],
    ) -> list[RerankResult]:
        """The documents best first by log-odds (ties keep input order), at most ``top_n``
        of them; each result's ``span`` says which part of the document scored (chunked:
        the best window). The other arguments are ``logits``'."""
        check_optional_int("top_n", top_n, minimum=0)
        judged = self._judge(_pairs(query, documents), self._settings(call))
        return self._ranked(documents, judged, top_n)

    async def ascore(
        self, query: str, documents: Sequence[str], **call: Unpack[RerankCall]
    ) -> np.ndarray:
        """``score``, awaitable."""
        return p_yes(await self.alogits(query, documents, **call))

    async def ascore_pairs(
        self, pairs: Sequence[tuple[str, str]], **call: Unpack[RerankCall]
    ) -> np.ndarray:
        """``score_pairs``, awaitable."""
        return p_yes(await self.alogits_pairs(pairs, **call))

    async def alogits(
        self, query: str, documents: Sequence[str], **call: Unpack[RerankCall]
    ) -> np.ndarray:
        """``logits``, awaitable: on the server backend it awaits the network; locally the
        model runs in a worker thread."""
        settings = self._settings(call)
        return (await self._ajudge(_pairs(query, documents), settings)).log_odds

    async def alogits_pairs(
        self, pairs: Sequence[tuple[str, str]], **call: Unpack[RerankCall]
    ) -> np.ndarray:
        """``logits_pairs``, awaitable."""
        settings = self._settings(call)
        return (await self._ajudge(check_pairs("pairs", pairs), settings)).log_odds

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        **call: Unpack[RerankCall],
    ) -> list[RerankResult]:
        """``rerank``, awaitable."""
        check_optional_int("top_n", top_n, minimum=0)
        judged = await self._ajudge(_pairs(query, documents), self._settings(call))
        return self._ranked(documents, judged, top_n)

    @staticmethod
    def _ranked(documents: Sequence[str], judged: _Judged, top_n: int | None) -> list[RerankResult]:
        log_odds = judged.log_odds
        # By log-odds, not P(yes): P(yes) of log-odds 18 and 25 are both 1.0 in float32.
        order = np.argsort(-log_odds, kind="stable")[:top_n]
        scores = p_yes(log_odds[order])
        return [
            RerankResult(int(i), float(p), documents[i], float(log_odds[i]), judged.spans[i])
            for i, p in zip(order, scores, strict=True)
        ]

    def _settings(self, call: RerankCall) -> _CallSettings:
        """This call's settings, checked, over the engine's."""
        unknown = sorted(set(call) - RerankCall.__optional_keys__)
        if unknown:
            raise TypeError(
                f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}: a call "
                f"takes {', '.join(sorted(RerankCall.__optional_keys__))}"
            )
        instruction = call.get("instruction")
        task = self.instruction if instruction is None else check_text("instruction", instruction)
        budget = self._budget
        max_document_tokens = call.get("max_document_tokens")
        if max_document_tokens is not None:
            budget = replace(budget, max_document_tokens=max_document_tokens)
        long_documents = call.get("long_documents")
        if long_documents is not None:
            budget = replace(budget, long_documents=long_documents)
        return _CallSettings(task, budget)

    def _tokenize(
        self, pairs: list[tuple[str, str]], settings: _CallSettings
    ) -> tuple[RerankInputs, np.ndarray]:
        budget = settings.budget
        distinct, inverse = unique_with_inverse(pairs)
        inputs = self._tokenizer.encode(distinct, settings.task, budget)
        warn_truncation(inputs.truncated, self.max_length, "distinct query-document pairs")
        if inputs.clipped:
            logger.warning(
                "%d of %d distinct documents ran past max_chunks_per_document=%d windows: "
                "only their first %d windows were scored",
                inputs.clipped,
                len(distinct),
                budget.max_chunks_per_document,
                budget.max_chunks_per_document,
            )
        return inputs, inverse

    @staticmethod
    def _best_windows(inputs: RerankInputs, log_odds: np.ndarray, inverse: np.ndarray) -> _Judged:
        """Each pair's log-odds (its best window's, first on ties) and that window's span,
        spread back to the caller's pairs."""
        log_odds = check_finite(np.asarray(log_odds, dtype=np.float32), "scores")
        firsts = np.flatnonzero(np.r_[True, inputs.owners[1:] != inputs.owners[:-1]])
        ends = [*firsts[1:], len(log_odds)]
        winners = [int(a + np.argmax(log_odds[a:b])) for a, b in zip(firsts, ends, strict=True)]
        best = log_odds[winners]
        return _Judged(best[inverse], [inputs.spans[winners[i]] for i in inverse])

    def _judge(self, pairs: list[tuple[str, str]], settings: _CallSettings) -> _Judged:
        backend = self._backend
        if not pairs:
            return _Judged(np.zeros(0, dtype=np.float32), [])
        inputs, inverse = self._tokenize(pairs, settings)
        return self._best_windows(inputs, backend.logits(inputs.prompts), inverse)

    async def _ajudge(self, pairs: list[tuple[str, str]], settings: _CallSettings) -> _Judged:
        backend = self._backend
        if not isinstance(backend, AsyncRerankBackend):
            # Local compute: in a worker thread, so the event loop keeps serving meanwhile.
            return await asyncio.to_thread(self._judge, pairs, settings)
        if not pairs:
            return _Judged(np.zeros(0, dtype=np.float32), [])
        inputs, inverse = await asyncio.to_thread(self._tokenize, pairs, settings)
        return self._best_windows(inputs, await backend.alogits(inputs.prompts), inverse)

    def __repr__(self) -> str:
        return (
            f"Qwen3Reranker({str(self.model_path)!r}, backend={self.backend!r}, "
            f"{self._placement()}, variant={self.variant.description!r})"
        )
