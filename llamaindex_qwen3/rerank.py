"""``Qwen3Rerank``: Qwen3-Reranker as a LlamaIndex node postprocessor."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from llamaindex_qwen3._common import changed_settings, model_id, state_without_engine
from qwen3_core import Qwen3Reranker, RerankResult
from qwen3_core.adapters import device_name, dtype_name, reject_settings_beside_engine
from qwen3_core.backends import Backend
from qwen3_core.lazy import LazyEngine
from qwen3_core.prompts import DEFAULT_INSTRUCTION, DEFAULT_RERANKER_MODEL
from qwen3_core.validation import check_text, check_texts

# (The type: ignore above: llama_index re-exports get_dispatcher without marking it public.)
dispatcher = get_dispatcher(__name__)

DEFAULT_TOP_N = 3
DEFAULT_MAX_LENGTH = 8192
RETRIEVAL_SCORE_KEY = "retrieval_score"  # the metadata key SentenceTransformerRerank uses


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
    ``node.get_content(metadata_mode=MetadataMode.EMBED)``) meets the query; best first
    (ties keep retrieval order), at most ``top_n``.

    Constructing it loads nothing and touches no network: the engine (and the weights, shared
    by every adapter on the same model, device and dtype) is built on first use, where a bad
    model id or folder raises the engine's error.

    ```python
    from llamaindex_qwen3 import Qwen3Rerank

    rerank = Qwen3Rerank(model="Qwen/Qwen3-Reranker-0.6B", top_n=3)
    query_engine = index.as_query_engine(similarity_top_k=8, node_postprocessors=[rerank])
    ```

    The returned ``NodeWithScore`` objects are new; the input list and its nodes are left as
    they were. Like LlamaIndex's rerankers it emits the ``CBEventType.RERANKING`` callback
    event and the ``ReRankStartEvent`` / ``ReRankEndEvent`` instrumentation events.

    Pass ``engine=Qwen3Reranker(...)`` to reuse a ready engine: its settings then fill
    ``model``, ``device``, ``dtype``, ``max_length`` and ``backend`` (and ``instruction``
    unless given), and changing any of those settings (or ``max_batch_tokens``) as well is
    an error.
    """

    model: str = Field(
        default=DEFAULT_RERANKER_MODEL,
        description="Hugging Face hub id or local folder of a Qwen3-Reranker checkpoint.",
    )
    top_n: int = Field(default=DEFAULT_TOP_N, ge=1, description="Most nodes to return.")
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
    device: str | None = Field(
        default=None,
        description='"cpu", "cuda", "cuda:N" or "mps"; None: CUDA when available, else MPS, '
        "else CPU.",
    )
    dtype: str | None = Field(
        default=None,
        description='"float32", "bfloat16" or "float16"; None: bfloat16 on GPUs with bf16 '
        "units, float16 on older GPUs, else float32.",
    )
    max_length: int = Field(
        default=DEFAULT_MAX_LENGTH,
        ge=1,
        description="Longest prompt in tokens; a longer document is truncated from its end.",
    )
    max_batch_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Padded tokens per forward pass; None: the engine's default for the device.",
    )
    backend: Backend = Field(default="transformers", description="Where the model runs.")
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Further engine arguments for the backend: for vLLM tensor_parallel_size, "
        "gpu_memory_utilization, max_model_len and vllm_kwargs; for the server base_url, "
        "api_key, timeout, max_concurrency and max_retries.",
    )

    _engine: LazyEngine[Qwen3Reranker] = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_RERANKER_MODEL,
        top_n: int = DEFAULT_TOP_N,
        *,
        instruction: str | None = None,
        keep_retrieval_score: bool = False,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_batch_tokens: int | None = None,
        backend: Backend = "transformers",
        backend_options: Mapping[str, Any] | None = None,
        engine: Qwen3Reranker | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        """``instruction`` defaults to the engine's (``DEFAULT_INSTRUCTION`` unless a ready
        ``engine`` says otherwise)."""
        if engine is not None:
            if not isinstance(engine, Qwen3Reranker):
                raise TypeError(f"engine must be a Qwen3Reranker, got {type(engine).__name__}")
            reject_settings_beside_engine(
                changed_settings(
                    {
                        "model": (model_id(model), DEFAULT_RERANKER_MODEL),
                        "device": (device, None),
                        "dtype": (dtype, None),
                        "max_length": (max_length, DEFAULT_MAX_LENGTH),
                        "max_batch_tokens": (max_batch_tokens, None),
                        "backend": (backend, "transformers"),
                        "backend_options": (backend_options, None),
                    }
                ),
                "Qwen3Reranker",
            )
            # The fields describe what actually runs, not the defaults.
            model, device, dtype = str(engine.model_path), engine.device, engine.dtype
            max_length, backend = engine.max_length, engine.backend
            if instruction is None:
                instruction = engine.instruction
        # Through a dict: BaseNodePostprocessor's typed __init__ does not know these fields.
        fields: dict[str, Any] = {
            "model": model_id(model),
            "top_n": top_n,
            "instruction": DEFAULT_INSTRUCTION if instruction is None else instruction,
            "keep_retrieval_score": keep_retrieval_score,
            "device": device_name(device),
            "dtype": dtype_name(dtype),
            "max_length": max_length,
            "max_batch_tokens": max_batch_tokens,
            "backend": backend,
            "backend_options": dict(backend_options or {}),
        }
        if callback_manager is not None:
            fields["callback_manager"] = callback_manager
        super().__init__(**fields)
        if engine is not None:
            self._engine = LazyEngine.ready(engine)
        else:
            self._engine = LazyEngine(
                functools.partial(
                    Qwen3Reranker,
                    self.model,
                    device=self.device,
                    dtype=self.dtype,
                    max_length=self.max_length,
                    instruction=self.instruction,
                    max_batch_tokens=self.max_batch_tokens,
                    backend=self.backend,
                    **self.backend_options,
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
                self.engine.rerank(query, texts, top_n=self.top_n, instruction=self.instruction)
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
                await engine.arerank(query, texts, top_n=self.top_n, instruction=self.instruction)
            )

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
                reranked.extend(self._with_score(nodes[hit.index], hit.score) for hit in hits)
                event.on_end(payload={EventPayload.NODES: reranked})
                return reranked

            yield finish
        dispatcher.event(ReRankEndEvent(nodes=reranked))

    def _with_score(self, retrieved: NodeWithScore, score: float) -> NodeWithScore:
        node = retrieved.node
        if self.keep_retrieval_score:
            # On a copy: writing into the caller's node would also change its EMBED text, and
            # so its score, the next time the same node is reranked.
            metadata = {**node.metadata, RETRIEVAL_SCORE_KEY: retrieved.score}
            node = node.model_copy(update={"metadata": metadata})
        return NodeWithScore(node=node, score=score)

    def __getstate__(self) -> dict[str, Any]:
        return state_without_engine(self)
