"""Internal (import its public names from ``qwen3_core``): ``Qwen3VLReranker``:
Qwen3-VL-Reranker's yes/no judgement of any input against any other (text, images, both), as
P(yes) and its log-odds."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qwen3_core.backend_options import BackendChoice
from qwen3_core.defaults import (
    DEFAULT_VL_RERANKER_MODEL,
    REMOTE_IMAGE_MAX_BYTES,
    REMOTE_IMAGE_TIMEOUT,
    VL_RERANKER_MAX_LENGTH,
)
from qwen3_core.engine import check_finite
from qwen3_core.hub import ModelSource
from qwen3_core.multimodal import prompts
from qwen3_core.multimodal.engine import VLEngineBase, check_remote
from qwen3_core.multimodal.inputs import Item, MultimodalInput, check_input, check_inputs
from qwen3_core.multimodal.runtime import SharedImages
from qwen3_core.multimodal.server import VLServerRerank
from qwen3_core.reranker import p_yes
from qwen3_core.validation import check_int, check_optional_int, check_text

"""The official reranker's longest prompt before its closing five tokens."""


@dataclass(frozen=True)
class MultimodalRerankResult:
    """One reranked document."""

    index: int
    """Position of the document in the input list."""
    score: float
    """P(yes): the model's probability that the document meets the query."""
    logit: float
    """The log-odds logit("yes") - logit("no"), of which ``score`` is the sigmoid; what the
    ranking sorts by."""
    document: Any
    """The document as given."""


class Qwen3VLReranker(VLEngineBase):
    """Judges (query, document) pairs with a Qwen3-VL-Reranker model; either side may be a
    text, an image or both.

    The prompt is the official one (the judging system turn, then ``<Instruct>: ...``,
    ``<Query>:`` and ``\\n<Document>:`` with no space after the colons, each side's images
    before its texts, and no think block); the score is sigmoid(h . (w_yes - w_no)) with h
    the last hidden state and w the lm_head's rows. Rankings sort by the log-odds.

    ```python
    from pathlib import Path

    from qwen3_core import Qwen3VLReranker

    reranker = Qwen3VLReranker("Qwen/Qwen3-VL-Reranker-2B")
    hits = reranker.rerank("revenue chart for 2024", [Path("a.png"), "some text"], top_n=5)
    ```

    Args:
        model: Hugging Face hub id or local folder of a Qwen3-VL-Reranker checkpoint.
        backend: ``"transformers"``, ``TransformersOptions(...)`` or
            ``ServerOptions(...)``, as for ``Qwen3VLEmbedder``.
        instruction: The task in the prompt; each call may give its own.
        max_length: Longest prompt in tokens before its closing five; a longer pair's text
            is cut (images and the prompt's frame are kept), as the official code cuts it.
        allow_remote_images: Fetch images given as ``http(s)://`` addresses (off by
            default).
        remote_image_max_bytes: The largest image download.
        remote_image_timeout: Seconds for connecting and for each read of a download.
        revision: For a hub id: the branch, tag or commit to download.
        token: For a hub id: the access token.
        cache_dir: For a hub id: where downloads are kept.
        local_files_only: For a hub id: use only what is already downloaded.
        source: ``"huggingface"`` or ``"modelscope"``.

    Raises:
        ModelKindError: The checkpoint is not a Qwen3-VL reranker this class loads.
        ModelNotFoundError: The model is neither a folder nor a hub id that can be fetched.
        ValueError: A setting is out of range, or a backend other than transformers.
    """

    _kind = "reranker"

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_VL_RERANKER_MODEL,
        *,
        backend: BackendChoice = "transformers",
        instruction: str = prompts.RERANK_INSTRUCTION,
        max_length: int = VL_RERANKER_MAX_LENGTH,
        allow_remote_images: bool = False,
        remote_image_max_bytes: int = REMOTE_IMAGE_MAX_BYTES,
        remote_image_timeout: float = REMOTE_IMAGE_TIMEOUT,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        source: ModelSource | None = None,
    ) -> None:
        self._backend_or_none = None
        self.instruction = check_text("instruction", instruction)
        """The task in the prompt unless a call gives its own."""
        self.max_length = check_int("max_length", max_length, minimum=1)
        remote = check_remote(allow_remote_images, remote_image_max_bytes, remote_image_timeout)
        hub = (revision, token, cache_dir, local_files_only, source)
        self._open(model, backend, self.max_length, remote, hub)
        if self._server is None:
            direction = self._loaded.score_direction
            assert direction is not None  # a reranker's rows are read at load
            self._direction = direction

    def score(
        self,
        query: MultimodalInput,
        documents: Sequence[MultimodalInput],
        *,
        instruction: str | None = None,
    ) -> np.ndarray:
        """P(yes) of each document for ``query``: float32 (len(documents),), input order."""
        return p_yes(self.logits(query, documents, instruction=instruction))

    def logits(
        self,
        query: MultimodalInput,
        documents: Sequence[MultimodalInput],
        *,
        instruction: str | None = None,
    ) -> np.ndarray:
        """The log-odds logit("yes") - logit("no") of each document for ``query``: float32
        (len(documents),), input order; ``score`` is their sigmoid.

        Raises:
            TypeError: An input is of a type no input takes.
            ImageInputError: An image cannot be used; the message names the input.
            FloatingPointError: The model produced NaN or inf.
        """
        item = check_input(query, "query")
        docs = check_inputs("documents", documents)
        return self._judge([(item, d) for d in docs], self._task(instruction), shared=[item])

    def score_pairs(
        self,
        pairs: Sequence[tuple[MultimodalInput, MultimodalInput]],
        *,
        instruction: str | None = None,
    ) -> np.ndarray:
        """P(yes) of each (query, document) pair: float32 (len(pairs),), input order."""
        return p_yes(self.logits_pairs(pairs, instruction=instruction))

    def logits_pairs(
        self,
        pairs: Sequence[tuple[MultimodalInput, MultimodalInput]],
        *,
        instruction: str | None = None,
    ) -> np.ndarray:
        """The log-odds of each (query, document) pair, each judged on its own."""
        return self._judge(_check_pairs(pairs), self._task(instruction))

    def rerank(
        self,
        query: MultimodalInput,
        documents: Sequence[MultimodalInput],
        top_n: int | None = None,
        *,
        instruction: str | None = None,
    ) -> list[MultimodalRerankResult]:
        """The documents best first by log-odds (ties keep input order), at most ``top_n``."""
        check_optional_int("top_n", top_n, minimum=0)
        log_odds = self.logits(query, documents, instruction=instruction)
        return _ranked(documents, log_odds, top_n)

    async def ascore(
        self,
        query: MultimodalInput,
        documents: Sequence[MultimodalInput],
        *,
        instruction: str | None = None,
    ) -> np.ndarray:
        """``score``, awaitable (the model runs in a worker thread)."""
        return await asyncio.to_thread(self.score, query, documents, instruction=instruction)

    async def alogits(
        self,
        query: MultimodalInput,
        documents: Sequence[MultimodalInput],
        *,
        instruction: str | None = None,
    ) -> np.ndarray:
        """``logits``, awaitable."""
        return await asyncio.to_thread(self.logits, query, documents, instruction=instruction)

    async def ascore_pairs(
        self,
        pairs: Sequence[tuple[MultimodalInput, MultimodalInput]],
        *,
        instruction: str | None = None,
    ) -> np.ndarray:
        """``score_pairs``, awaitable."""
        return await asyncio.to_thread(self.score_pairs, pairs, instruction=instruction)

    async def alogits_pairs(
        self,
        pairs: Sequence[tuple[MultimodalInput, MultimodalInput]],
        *,
        instruction: str | None = None,
    ) -> np.ndarray:
        """``logits_pairs``, awaitable."""
        return await asyncio.to_thread(self.logits_pairs, pairs, instruction=instruction)

    async def arerank(
        self,
        query: MultimodalInput,
        documents: Sequence[MultimodalInput],
        top_n: int | None = None,
        *,
        instruction: str | None = None,
    ) -> list[MultimodalRerankResult]:
        """``rerank``, awaitable."""
        return await asyncio.to_thread(
            self.rerank, query, documents, top_n, instruction=instruction
        )

    def tokenize(
        self,
        query: MultimodalInput,
        documents: Sequence[MultimodalInput],
        *,
        instruction: str | None = None,
    ) -> list[np.ndarray]:
        """The token ids of each prompt as the model sees it, each image's tokens in place."""
        item = check_input(query, "query")
        pairs = [(item, d) for d in check_inputs("documents", documents)]
        ids: list[np.ndarray] = []
        for _, encoded in self._chunks(
            len(pairs), self._prompts(pairs, self._task(instruction)), [item]
        ):
            ids += [e.ids for e in encoded]
        return ids

    def _task(self, instruction: str | None) -> str:
        task = self.instruction if instruction is None else check_text("instruction", instruction)
        return task or prompts.RERANK_INSTRUCTION

    @staticmethod
    def _prompts(pairs: list[tuple[Item, Item]], task: str):  # type: ignore[no-untyped-def]
        def prompts_of(indices: range) -> Iterator[tuple[list[object], list[Item], str]]:
            for i in indices:
                query, document = pairs[i]
                label = f"the pair of {query.label} and {document.label}"
                yield list(prompts.rerank_prompt(query, document, task)), [query, document], label

        return prompts_of

    def _judge(
        self, pairs: list[tuple[Item, Item]], task: str, shared: Sequence[Item] = ()
    ) -> np.ndarray:
        self._backend  # noqa: B018 (a closed engine fails before any work)
        out = np.empty(len(pairs), dtype=np.float32)
        server = self._server
        if isinstance(server, VLServerRerank):
            for indices, sent in self._served(len(pairs), self._prompts(pairs, task), shared):
                out[indices.start : indices.stop] = server.logits_of(sent)
            return check_finite(out, "scores")
        direction = self._direction
        images = SharedImages()  # the query's: through the vision tower once per call
        prompts_of = self._prompts(pairs, task)
        for indices, encoded in self._chunks(len(pairs), prompts_of, shared, images):
            out[indices.start : indices.stop] = self._run(
                encoded, lambda s: s.float() @ direction, 0, "reranking", images
            )
        return check_finite(out, "scores")

    def __repr__(self) -> str:
        return f"Qwen3VLReranker({str(self.model_path)!r}, {self._placement()})"


def _check_pairs(pairs: Any) -> list[tuple[Item, Item]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(
            f"pairs must be a list of (query, document) pairs, got {type(pairs).__name__}"
        )
    checked = []
    for index, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"pairs[{index}] must be a (query, document) pair, got {pair!r:.60}")
        checked.append(
            (check_input(pair[0], f"pairs[{index}][0]"), check_input(pair[1], f"pairs[{index}][1]"))
        )
    return checked


def _ranked(
    documents: Sequence[Any], log_odds: np.ndarray, top_n: int | None
) -> list[MultimodalRerankResult]:
    order = np.argsort(-log_odds, kind="stable")[:top_n]
    scores = p_yes(log_odds[order])
    return [
        MultimodalRerankResult(int(i), float(p), float(log_odds[i]), documents[i])
        for i, p in zip(order, scores, strict=True)
    ]
