"""Internal (import its public names from ``llamaindex_qwen3``): ``Qwen3Rerank``: Qwen3-Reranker
as a LlamaIndex node postprocessor."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from llamaindex_qwen3._common import KeywordChecks
from qwen3_core.adapter_settings import RerankerSettings
from qwen3_core.defaults import MIN_TOP_N, TOP_N
from qwen3_core.validation import check_text, check_texts

if TYPE_CHECKING:
    from qwen3_core.lazy import LazyEngine

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


class NodeRerank(BaseNodePostprocessor):
    """What ``Qwen3Rerank`` and ``Qwen3VLRerank`` share: the engine call, sync and async,
    LlamaIndex's rerank events around it, and the returned nodes (copies with the score and
    the log-odds). A subclass turns the nodes and the query into engine inputs
    (``_checked``); its settings mixin gives the engine."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    if TYPE_CHECKING:  # given by the adapter's settings mixin (qwen3_core.adapter_settings)
        model: str
        _engine: LazyEngine[Any]

        @property
        def engine(self) -> Any: ...

        def call_settings(self) -> dict[str, Any]: ...

    top_n: int = Field(default=TOP_N, ge=MIN_TOP_N)
    """Most nodes to return."""
    keep_retrieval_score: bool = False
    """Keep the retriever's score in the returned node's ``metadata["retrieval_score"]`` (on a
    copy of the node: the input node is not changed)."""

    # Not an abstractmethod: LlamaIndex would wrap each implementation in a span of its own.
    def _checked(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[Any, list[Any]]:
        """The query and the nodes as engine inputs, checked before the engine is built and
        before LlamaIndex's events see the input."""
        raise NotImplementedError

    def _spans_kept(self) -> bool:
        """Whether the returned nodes keep the scored part's offsets in their metadata."""
        return False

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, inputs = self._checked(nodes, query_bundle)
        if not nodes:
            return []
        with self._reranking(nodes, query_bundle) as finish:  # type: ignore[arg-type]
            return finish(
                self.engine.rerank(query, inputs, top_n=self.top_n, **self.call_settings())
            )

    @dispatcher.span  # LlamaIndex wraps only the sync method in a span by itself
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        # The engine's async method: on the server backend it awaits the network; locally the
        # model (and a first build, which loads weights) runs in a worker thread.
        query, inputs = self._checked(nodes, query_bundle)
        if not nodes:
            return []
        engine = await self._engine.aget()
        with self._reranking(nodes, query_bundle) as finish:  # type: ignore[arg-type]
            return finish(
                await engine.arerank(query, inputs, top_n=self.top_n, **self.call_settings())
            )

    def _no_query(self) -> ValueError:
        return ValueError(
            f"{type(self).__name__} needs a query: call postprocess_nodes(nodes, "
            "query_str=...) or pass query_bundle=QueryBundle(...)"
        )

    @contextmanager
    def _reranking(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle
    ) -> Iterator[Callable[[list[Any]], list[NodeWithScore]]]:
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

            def finish(hits: list[Any]) -> list[NodeWithScore]:
                reranked.extend(self._with_score(nodes[hit.index], hit) for hit in hits)
                event.on_end(payload={EventPayload.NODES: reranked})
                return reranked

            yield finish
        dispatcher.event(ReRankEndEvent(nodes=reranked))

    def _with_score(self, retrieved: NodeWithScore, hit: Any) -> NodeWithScore:
        """A copy of the node with the hit's score, and its log-odds (and span) in metadata;
        ``hit`` is a ``RerankResult`` or ``MultimodalRerankResult``."""
        node = retrieved.node
        # On a copy: writing into the caller's node would also change its EMBED text, and so
        # its score, the next time the same node is reranked.
        metadata: dict[str, Any] = {**node.metadata, RELEVANCE_LOGIT_KEY: hit.logit}
        ours = [RELEVANCE_LOGIT_KEY]
        if self._spans_kept():
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


class Qwen3Rerank(RerankerSettings, KeywordChecks, NodeRerank):
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

    It takes keyword arguments, as LlamaIndex's classes do; any other name, or an engine of
    the wrong class, is a ``TypeError``. Pass ``engine=Qwen3Reranker(...)`` to reuse a ready
    engine: the settings it fixes (``model``, ``backend``, ...: each field says) are then
    read from it, and giving any of them as well is an error; the per-call ones
    (``instruction``, ...) are the engine's unless given.
    """

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Rerank"

    def _spans_kept(self) -> bool:
        return self.long_documents == "chunk"

    def _checked(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise self._no_query()
        check_nodes(nodes)
        query = check_text("query_str", query_bundle.query_str)
        # The text LlamaIndex's own rerankers score: the content with its embed metadata.
        texts = check_texts(
            "nodes", [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        )
        return query, texts
