"""``Qwen3Rerank``: Qwen3-Reranker as a LlamaIndex node postprocessor."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from llamaindex_qwen3._common import (
    BackendField,
    one_model_name,
    state_without_engine,
)
from qwen3_core import Qwen3Reranker, RerankResult
from qwen3_core.adapters import reject_settings_beside_engine
from qwen3_core.backends.options import BackendChoice
from qwen3_core.defaults import (
    CHUNK_OVERLAP,
    DEFAULT_RERANKER_MODEL,
    MAX_CHUNKS_PER_DOCUMENT,
    MAX_LENGTH,
    MIN_MAX_LENGTH,
    MIN_TOP_N,
    TOP_N,
)
from qwen3_core.document_windows import DocumentBudget, LongDocuments
from qwen3_core.lazy import LazyEngine
from qwen3_core.prompts import DEFAULT_INSTRUCTION
from qwen3_core.validation import check_text, check_texts

# (The type: ignore above: llama_index re-exports get_dispatcher without marking it public.)
dispatcher = get_dispatcher(__name__)

RETRIEVAL_SCORE_KEY = "retrieval_score"  # the metadata key SentenceTransformerRerank uses
RELEVANCE_LOGIT_KEY = "relevance_logit"  # the keys the LangChain adapter uses too
RELEVANCE_SPAN_KEY = "relevance_span"


def check_nodes(nodes: Any) -> None:
    """``nodes`` must be a list of ``NodeWithScore``: a TypeError names the first that is not."""
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise TypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
    for index, node in enumerate(nodes):
        if not isinstance(node, NodeWithScore):
            raise TypeError(f"nodes[{index}] must be a NodeWithScore, got {type(node).__name__}")


class Qwen3Rerank(BaseNodePostprocessor):
    """Reranks retrieved nodes with ``qwen3_core.Qwen3Reranker``: each returned node's score
    is P(yes), the model's probability that the node's text (as
    ``node.get_content(metadata_mode=MetadataMode.EMBED)``) meets the query, and its
    ``metadata["relevance_logit"]`` the log-odds logit("yes") - logit("no"), of which P(yes)
    is the sigmoid; best first by log-odds, which still tells apart nodes whose P(yes)
    rounds to 1.0 (ties keep retrieval order), at most ``top_n``. With
    ``long_documents="chunk"`` a long node is scored in overlapping windows, its score the best
    window's, whose (start, end) character offsets in the scored text (the EMBED view above)
    are ``metadata["relevance_span"]``.

    Constructing it loads nothing and touches no network: the engine (and the weights, shared
    by every adapter on the same model, device and dtype) is built on first use, where a bad
    model id or folder raises the engine's error.

    ```python
    from llamaindex_qwen3 import Qwen3Rerank

    rerank = Qwen3Rerank(model="Qwen/Qwen3-Reranker-0.6B", top_n=3)
    query_engine = index.as_query_engine(similarity_top_k=8, node_postprocessors=[rerank])
    ```

    The returned ``NodeWithScore`` objects are new, around copies of the nodes (the log-odds
    kept out of the text the embedding model and the LLM see); the input list and its nodes
    are left as they were. Like LlamaIndex's rerankers it emits the
    ``CBEventType.RERANKING`` callback event and the ``ReRankStartEvent`` /
    ``ReRankEndEvent`` instrumentation events.

    Pass ``engine=Qwen3Reranker(...)`` to reuse a ready engine: its settings then fill
    ``model``, ``backend``, ``max_length``, ``chunk_overlap`` and ``max_chunks_per_document``
    (and ``instruction``, ``max_document_tokens`` and ``long_documents`` unless given), and
    giving any of the first five as well is an error.
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # a backend dict may hold an api_key

    model: str = Field(
        default=DEFAULT_RERANKER_MODEL,
        description="Hugging Face hub id or local folder of a Qwen3-Reranker checkpoint.",
    )
    top_n: int = Field(default=TOP_N, ge=MIN_TOP_N, description="Most nodes to return.")
    instruction: str = Field(
        default=DEFAULT_INSTRUCTION, description="The task the reranker judges relevance for."
    )
    keep_retrieval_score: bool = Field(
        default=False,
        description=(
            f"Keep the retriever's score in the returned node's metadata[\"{RETRIEVAL_SCORE_KEY}\"]"
            " (on a copy of the node: the input node is not changed)."
        ),
    )
    backend: BackendField = Field(
        default="transformers",
        description='Where the model runs: "transformers", "openvino", "vllm", or '
        "TransformersOptions, OpenVINOOptions, VllmOptions or ServerOptions with that "
        "backend's settings.",
    )
    max_length: int = Field(
        default=MAX_LENGTH,
        ge=MIN_MAX_LENGTH["reranker"],
        description="Longest prompt in tokens; a longer document is truncated from its end.",
    )
    max_document_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Most tokens of a node's text in one prompt; None: what max_length leaves.",
    )
    long_documents: LongDocuments = Field(
        default="truncate",
        description='A text over the budget: "truncate" scores its first tokens; "chunk" '
        "scores it in overlapping windows and keeps the best window's score.",
    )
    chunk_overlap: int = Field(
        default=CHUNK_OVERLAP,
        ge=0,
        description="Tokens shared by neighbouring windows (at most half a window).",
    )
    max_chunks_per_document: int = Field(
        default=MAX_CHUNKS_PER_DOCUMENT,
        ge=1,
        description="Most windows scored per node; past them, one warning per call.",
    )

    _engine: LazyEngine[Qwen3Reranker] = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        top_n: int = TOP_N,
        *,
        model_name: str | os.PathLike[str] | None = None,
        backend: BackendChoice | None = None,
        instruction: str | None = None,
        keep_retrieval_score: bool = False,
        max_length: int | None = None,
        max_document_tokens: int | None = None,
        long_documents: LongDocuments | None = None,
        chunk_overlap: int | None = None,
        max_chunks_per_document: int | None = None,
        engine: Qwen3Reranker | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        """Args:
        model: Hub id or local folder of a Qwen3-Reranker checkpoint (default
            ``Qwen/Qwen3-Reranker-0.6B``); ``model_name`` is the same, by LlamaIndex's name.
        top_n: Most nodes to return.
        backend: Where the model runs: ``"transformers"`` (default), ``"openvino"``,
            ``"vllm"``, or ``TransformersOptions(device=...)``, ``OpenVINOOptions(...)``,
            ``VllmOptions(...)``,
            ``ServerOptions(base_url=...)`` from ``qwen3_core``.
        instruction: The task the reranker judges relevance for; None: the engine's
            (``DEFAULT_INSTRUCTION`` unless a ready ``engine`` says otherwise).
        keep_retrieval_score: Keep the retriever's score in each returned node's metadata.
        max_length: Longest prompt in tokens; None: 8192.
        max_document_tokens: Most tokens of a node's text in one prompt; None: whatever
            ``max_length`` leaves (or the ready engine's).
        long_documents: A text over the budget: ``"truncate"`` (the default) scores its
            first tokens; ``"chunk"`` scores it in overlapping windows and keeps the best.
        chunk_overlap: Tokens shared by neighbouring windows; None: 64.
        max_chunks_per_document: Most windows scored per node; None: 8.
        engine: A ready ``Qwen3Reranker`` to use instead of building one from the settings.
        callback_manager: LlamaIndex's callback manager.

        Raises:
            TypeError: An unknown keyword argument, or an engine of the wrong class.
            ValueError: Settings given beside ``engine``, or a setting out of range.
        """
        model = one_model_name(model, model_name)
        if engine is not None:
            if not isinstance(engine, Qwen3Reranker):
                raise TypeError(f"engine must be a Qwen3Reranker, got {type(engine).__name__}")
            reject_settings_beside_engine(
                {
                    "model": model,
                    "backend": backend,
                    "max_length": max_length,
                    "chunk_overlap": chunk_overlap,
                    "max_chunks_per_document": max_chunks_per_document,
                },
                "Qwen3Reranker",
            )
            # The fields describe what actually runs, not the defaults.
            model, backend, max_length = str(engine.model_path), engine.options, engine.max_length
            chunk_overlap = engine.chunk_overlap
            max_chunks_per_document = engine.max_chunks_per_document
            if instruction is None:
                instruction = engine.instruction
            if max_document_tokens is None:
                max_document_tokens = engine.max_document_tokens
            if long_documents is None:
                long_documents = engine.long_documents
        # Through a dict: BaseNodePostprocessor's typed __init__ does not know these fields.
        fields: dict[str, Any] = {
            "model": DEFAULT_RERANKER_MODEL if model is None else model,
            "top_n": top_n,
            "instruction": DEFAULT_INSTRUCTION if instruction is None else instruction,
            "keep_retrieval_score": keep_retrieval_score,
            "backend": "transformers" if backend is None else backend,
            "max_length": MAX_LENGTH if max_length is None else max_length,
            "max_document_tokens": max_document_tokens,
            "long_documents": "truncate" if long_documents is None else long_documents,
            "chunk_overlap": CHUNK_OVERLAP if chunk_overlap is None else chunk_overlap,
            "max_chunks_per_document": (
                MAX_CHUNKS_PER_DOCUMENT
                if max_chunks_per_document is None
                else max_chunks_per_document
            ),
        }
        if callback_manager is not None:
            fields["callback_manager"] = callback_manager
        super().__init__(**fields)
        DocumentBudget(
            self.max_document_tokens,
            self.long_documents,
            self.chunk_overlap,
            self.max_chunks_per_document,
        )
        if engine is not None:
            self._engine = LazyEngine.ready(engine)
        else:
            self._engine = LazyEngine(
                functools.partial(
                    Qwen3Reranker,
                    self.model,
                    backend=self.backend,
                    instruction=self.instruction,
                    max_length=self.max_length,
                    max_document_tokens=self.max_document_tokens,
                    long_documents=self.long_documents,
                    chunk_overlap=self.chunk_overlap,
                    max_chunks_per_document=self.max_chunks_per_document,
                )
            )

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Rerank"

    @property
    def engine(self) -> Qwen3Reranker:
        """The engine, built (and its weights loaded) on the first access."""
        return self._engine.get()

    @property
    def engine_loaded(self) -> bool:
        """Whether the engine has been built yet."""
        return self._engine.loaded

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, texts = self._checked(nodes, query_bundle)
        if not nodes:
            return []
        with self._reranking(nodes, query_bundle) as finish:  # type: ignore[arg-type]
            return finish(
                self.engine.rerank(query, texts, top_n=self.top_n, **self._call_settings())
            )

    @dispatcher.span  # LlamaIndex wraps only the sync method in a span by itself
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        # The engine's async method: on the server backend it awaits the network; locally the
        # model (and a first build, which loads weights) runs in a worker thread.
        query, texts = self._checked(nodes, query_bundle)
        if not nodes:
            return []
        engine = await self._engine.aget()
        with self._reranking(nodes, query_bundle) as finish:  # type: ignore[arg-type]
            return finish(
                await engine.arerank(query, texts, top_n=self.top_n, **self._call_settings())
            )

    def _call_settings(self) -> dict[str, Any]:
        """The engine call's settings that are the postprocessor's own."""
        return {
            "instruction": self.instruction,
            "max_document_tokens": self.max_document_tokens,
            "long_documents": self.long_documents,
        }

    def _checked(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[str]]:
        """The query and the nodes' texts, checked before the engine is built and before
        LlamaIndex's events see the input."""
        if query_bundle is None:
            raise ValueError(
                "Qwen3Rerank needs a query: call postprocess_nodes(nodes, query_str=...) or "
                "pass query_bundle=QueryBundle(...)"
            )
        check_nodes(nodes)
        query = check_text("query_str", query_bundle.query_str)
        # The text LlamaIndex's own rerankers score: the content with its embed metadata.
        texts = check_texts(
            "nodes", [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        )
        return query, texts

    @contextmanager
    def _reranking(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle
    ) -> Iterator[Callable[[list[RerankResult]], list[NodeWithScore]]]:
        """LlamaIndex's rerank events around one call; the caller passes the engine's hits to
        the yielded function, which returns the reranked nodes."""
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model
            )
        )
        reranked: list[NodeWithScore] = []
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:

            def finish(hits: list[RerankResult]) -> list[NodeWithScore]:
                reranked.extend(self._with_score(nodes[hit.index], hit) for hit in hits)
                event.on_end(payload={EventPayload.NODES: reranked})
                return reranked

            yield finish
        dispatcher.event(ReRankEndEvent(nodes=reranked))

    def _with_score(self, retrieved: NodeWithScore, hit: RerankResult) -> NodeWithScore:
        node = retrieved.node
        # On a copy: writing into the caller's node would also change its EMBED text, and so
        # its score, the next time the same node is reranked.
        metadata: dict[str, Any] = {**node.metadata, RELEVANCE_LOGIT_KEY: hit.logit}
        ours = [RELEVANCE_LOGIT_KEY]
        if self.long_documents == "chunk":
            metadata[RELEVANCE_SPAN_KEY] = hit.span
            ours.append(RELEVANCE_SPAN_KEY)
        if self.keep_retrieval_score:
            metadata[RETRIEVAL_SCORE_KEY] = retrieved.score
        # The log-odds and span are for the caller, not text for the embedding model or LLM.
        update: dict[str, Any] = {"metadata": metadata}
        for excluded in ("excluded_embed_metadata_keys", "excluded_llm_metadata_keys"):
            keys: list[str] = getattr(node, excluded)
            missing = [key for key in ours if key not in keys]
            if missing:
                update[excluded] = [*keys, *missing]
        return NodeWithScore(node=node.model_copy(update=update), score=hit.score)

    def __getstate__(self) -> dict[str, Any]:
        return state_without_engine(self)
