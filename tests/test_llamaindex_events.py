"""Qwen3Rerank's reranking events, seen by real LlamaIndex handlers: an instrumentation
event handler on the root dispatcher and a LlamaDebugHandler callback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, TextNode

from llamaindex_qwen3 import Qwen3Embedding, Qwen3Rerank
from qwen3_core import Qwen3Embedder, Qwen3Reranker

QUERY = "中国的首都是哪里？"


class RerankEvents(BaseEventHandler):
    """Keeps the reranking events it is sent (a handler's exceptions are swallowed by the
    dispatcher, so the checks happen in the test, not here)."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "RerankEvents"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


@pytest.fixture
def observed() -> Iterator[RerankEvents]:
    handler = RerankEvents()
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]


@pytest.fixture
def debug() -> LlamaDebugHandler:
    return LlamaDebugHandler(print_trace_on_end=False)


def ids_scores(nodes: list[NodeWithScore]) -> list[tuple[str, float | None]]:
    return [(n.node.node_id, n.score) for n in nodes]


def check_events(
    observed: RerankEvents,
    debug: LlamaDebugHandler,
    given: list[NodeWithScore],
    returned: list[NodeWithScore],
    model: str,
) -> None:
    # Instrumentation: one start and one end, in the same span.
    start, end = observed.events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.query is not None and not isinstance(start.query, str)
    assert (start.query.query_str, start.top_n, start.model_name) == (QUERY, 3, model)
    assert ids_scores(start.nodes) == ids_scores(given)
    assert ids_scores(end.nodes) == ids_scores(returned)
    assert start.span_id is not None and start.span_id == end.span_id
    # The sync or the async method's span.
    assert start.span_id.startswith(
        ("Qwen3Rerank._postprocess_nodes", "Qwen3Rerank._apostprocess_nodes")
    )
    # Callbacks: one RERANKING start/end pair with the payloads LlamaIndex's rerankers send.
    (pair,) = debug.get_event_pairs(CBEventType.RERANKING)
    begin, finish = pair
    assert begin.payload is not None and finish.payload is not None
    assert begin.payload[EventPayload.QUERY_STR] == QUERY
    assert begin.payload[EventPayload.MODEL_NAME] == model
    assert begin.payload[EventPayload.TOP_K] == 3
    assert ids_scores(begin.payload[EventPayload.NODES]) == ids_scores(given)
    assert ids_scores(finish.payload[EventPayload.NODES]) == ids_scores(returned)


def test_postprocess_emits_the_reranking_events(
    observed: RerankEvents, debug: LlamaDebugHandler, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    rerank = Qwen3Rerank(engine=reranker, top_n=3, callback_manager=CallbackManager([debug]))
    given = [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5)
        for i, t in enumerate(corpus[:8])
    ]
    returned = rerank.postprocess_nodes(given, query_str=QUERY)
    check_events(observed, debug, given, returned, rerank.model)


async def test_async_query_engine_emits_the_reranking_events(
    observed: RerankEvents,
    debug: LlamaDebugHandler,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    corpus: list[str],
) -> None:
    documents = [Document(text=t, id_=f"doc-{i}") for i, t in enumerate(corpus)]
    index = VectorStoreIndex.from_documents(documents, embed_model=Qwen3Embedding(engine=embedder))
    retriever = index.as_retriever(similarity_top_k=8)
    rerank = Qwen3Rerank(engine=reranker, top_n=3)
    # The query engine hands its callback manager to its postprocessors.
    engine = RetrieverQueryEngine.from_args(
        retriever,
        llm=MockLLM(),
        node_postprocessors=[rerank],
        callback_manager=CallbackManager([debug]),
    )
    given = await retriever.aretrieve(QUERY)
    response = await engine.aquery(QUERY)
    check_events(observed, debug, given, response.source_nodes, rerank.model)


def test_no_events_without_work(
    observed: RerankEvents, debug: LlamaDebugHandler, reranker: Qwen3Reranker
) -> None:
    rerank = Qwen3Rerank(engine=reranker, callback_manager=CallbackManager([debug]))
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    with pytest.raises(ValueError):
        rerank.postprocess_nodes([NodeWithScore(node=TextNode(text="x"), score=1.0)])
    assert observed.events == [] and debug.get_event_pairs(CBEventType.RERANKING) == []
