"""Internal: the transformers/torch backend (CPU or GPU): a Qwen3 base model in this process,
either qwen3-rag's own decoder (CPU, ``qwen3_core.decoder``) or transformers' ``Qwen3Model``.

Batches are right-padded and run without an attention mask: under the causal mask no real
token can see the padding that follows it, so each sequence's result does not depend on its
batch, and SDPA takes its mask-free causal kernel. Only the last real position is read.

Reranking shares work between the documents of one query: the prompt prefix, instruction
and query are the same tokens for each, so they run once and their key/value cache is
reused for every batch of documents.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from qwen3_core.backend_options import CpuThreads, OpenVINOOptions, TransformersOptions
from qwen3_core.batching import OutOfMemoryBackoff, is_out_of_memory, progress_bar, run_batched
from qwen3_core.decoder import KVCache, Qwen3Decoder
from qwen3_core.defaults import ModelKind
from qwen3_core.devices import cuda_batch_tokens, default_share_prefix
from qwen3_core.hub import HubOptions
from qwen3_core.kernels.shared_cores import forward_threads, resolve_cpu_threads
from qwen3_core.loading import LoadedModel, load_model
from qwen3_core.tokenization import RerankPrompt, TokenIds

if TYPE_CHECKING:
    from qwen3_core.checkpoints import Checkpoint

# Padded tokens per batch. On CPU, larger batches lose to cache misses and attention (0.6B
# shape, 2 cores, oneDNN linears, documents of 16-512 tokens: 512 ran 10-15% faster than 1024
# for embedding and reranking, in float32 and int8; 256 ran level with 512). A GPU wants large
# batches to fill its units.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 512, "cuda": 65536}
DEFAULT_MAX_BATCH_SIZE = 256


def default_max_batch_tokens(
    device: torch.device, config: Any = None, dtype: torch.dtype = torch.float32
) -> int:
    """The padded-token budget of one batch: measured on CPU; on CUDA, what the memory left
    free once the model is loaded holds (``cuda_batch_tokens``)."""
    if device.type == "cuda" and config is not None:
        free, _ = torch.cuda.mem_get_info(device)
        return cuda_batch_tokens(
            free,
            hidden_size=int(config.hidden_size),
            intermediate_size=int(config.intermediate_size),
            element_size=torch.finfo(dtype).bits // 8,
        )
    return DEFAULT_MAX_BATCH_TOKENS.get(device.type, 16384)


class _TorchRunner:
    """Pads id sequences into batches and runs a decoder to its last real positions."""

    def __init__(
        self,
        loaded: LoadedModel,
        decoder: torch.nn.Module,
        *,
        max_batch_tokens: int | None,
        max_batch_size: int,
        show_progress: bool | None,
        cpu_threads: CpuThreads | None,
    ) -> None:
        self.loaded = loaded
        self.cpu_threads = cpu_threads
        self.device = loaded.device
        self.decoder = decoder
        self.max_batch_tokens = max_batch_tokens or default_max_batch_tokens(
            loaded.device, loaded.model.config, loaded.dtype
        )
        self.max_batch_size = max_batch_size
        self.show_progress = show_progress
        self.backoff = OutOfMemoryBackoff()
        self.model_config: Any = loaded.model.config
        self._own = isinstance(decoder, Qwen3Decoder)
        # transformers 5 renamed the cache argument; the old name warns of its removal.
        parameters = inspect.signature(decoder.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"
        pad = loaded.checkpoint.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else 0)

    def close(self) -> None:
        """Drop this runner's references to the model, so the shared copy can be freed once
        no other engine holds it."""
        self.decoder = torch.nn.Identity()
        self.model_config = None
        del self.loaded

    def _padded(self, sequences: Sequence[TokenIds]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(s) for s in sequences])
        ids = torch.full((len(sequences), int(lengths.max())), self.pad_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.from_numpy(seq)
        if self.device.type == "cuda":
            ids = ids.pin_memory()
        return ids.to(self.device, non_blocking=True), lengths.to(self.device)

    def last_hidden(
        self, sequences: Sequence[TokenIds], prefix: KVCache | None = None
    ) -> torch.Tensor:
        """Hidden states (after the final norm) at each sequence's last position: (B, hidden).
        With ``prefix``, the sequences continue that cached prefix."""
        ids, lengths = self._padded(sequences)
        kwargs: dict[str, object] = {"use_cache": False}
        if self._own:
            kwargs = {"prefix": prefix}
        elif prefix is not None:
            from transformers import DynamicCache

            batch = len(sequences)
            cache = DynamicCache(config=self.model_config)
            for layer, (keys, values) in enumerate(prefix):
                cache.update(
                    keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer
                )
            kwargs = {"use_cache": True, self._cache_argument: cache}
        with torch.inference_mode(), forward_threads(self.cpu_threads):
            hidden = self.decoder(input_ids=ids, **kwargs).last_hidden_state
            rows = torch.arange(len(sequences), device=self.device)
            last: torch.Tensor = hidden[rows, lengths - 1]
            return last

    def prefix_cache(self, ids: TokenIds) -> KVCache:
        """Run a prefix once and keep its keys and values."""
        tensor, _ = self._padded([ids])
        with torch.inference_mode(), forward_threads(self.cpu_threads):
            output = self.decoder(input_ids=tensor, use_cache=True)
        if self._own:
            own: KVCache = output.cache
            return own
        cache = getattr(output, "cache", None) or output.past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    def total_tokens_exceed_one_batch(self, lengths: Sequence[int]) -> bool:
        return len(lengths) > self.max_batch_size or sum(lengths) > self.max_batch_tokens

    def run(
        self,
        lengths: Sequence[int],
        fn: Callable[[np.ndarray], np.ndarray],
        out: np.ndarray,
        bar: tqdm[Any] | None = None,
    ) -> np.ndarray:
        return run_batched(
            lengths,
            fn,
            out,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=self.max_batch_size,
            backoff=self.backoff,
            bar=bar,
        )


class _TorchBackend:
    """What both transformers backends show of their runner."""

    _runner: _TorchRunner

    @property
    def loaded_model(self) -> torch.nn.Module:
        """The torch model (shared by engines on the same model, device and dtype)."""
        return self._runner.loaded.model

    @property
    def max_batch_tokens(self) -> int:
        """Padded tokens per forward pass."""
        return self._runner.max_batch_tokens

    def close(self) -> None:
        self._runner.close()


class TransformersEmbeddingBackend(_TorchBackend):
    """Last-token hidden states of a ``Qwen3Model``."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_tokens: int | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        show_progress: bool | None = None,
        cpu_threads: CpuThreads | None = None,
    ) -> None:
        self._runner = _TorchRunner(
            loaded,
            loaded.model,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size,
            show_progress=show_progress,
            cpu_threads=cpu_threads,
        )
        self._hidden_size = int(loaded.checkpoint.config["hidden_size"])

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    def embed(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        out = np.empty((len(sequences), self._hidden_size), dtype=np.float32)
        lengths = [len(s) for s in sequences]

        def run(batch: np.ndarray) -> np.ndarray:
            states = self._runner.last_hidden([sequences[i] for i in batch])
            return states.float().cpu().numpy()

        many = self._runner.total_tokens_exceed_one_batch(lengths)
        with progress_bar(
            len(sequences), self._runner.show_progress, many_batches=many, description="embedding"
        ) as bar:
            return self._runner.run(lengths, run, out, bar)


class TransformersRerankBackend(_TorchBackend):
    """The log-odds logit("yes") - logit("no") from the checkpoint's own scoring head, never
    the full-vocabulary logits: the base model's last hidden state times the float32
    difference of its two rows [no, yes] (the softmax of the official formula is the
    sigmoid of that difference). Which rows, for each variant: ``LoadedModel.score_rows``,
    read at load for the checkpoint's own yes/no tokens (``Checkpoint.score_token_ids``).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_tokens: int | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        show_progress: bool | None = None,
        share_prefix: bool = True,
        cpu_threads: CpuThreads | None = None,
    ) -> None:
        self._runner = _TorchRunner(
            loaded,
            loaded.model,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size,
            show_progress=show_progress,
            cpu_threads=cpu_threads,
        )
        assert loaded.score_rows is not None, "an embedding model has no score rows"
        no_row, yes_row = loaded.score_rows
        self._direction = yes_row - no_row
        self.share_prefix = share_prefix

    def _log_odds(self, states: torch.Tensor) -> np.ndarray:
        log_odds: np.ndarray = (states.float() @ self._direction).cpu().numpy()
        return log_odds

    def logits(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        out = np.empty(len(prompts), dtype=np.float32)
        shared: list[list[int]] = []
        alone = list(range(len(prompts)))
        if self.share_prefix:
            groups: dict[bytes, list[int]] = defaultdict(list)
            for index, prompt in enumerate(prompts):
                groups[prompt.head.tobytes()].append(index)
            shared = [g for g in groups.values() if len(g) > 1]
            alone = [g[0] for g in groups.values() if len(g) == 1]
        lengths = [len(p) for p in prompts]
        many = self._runner.total_tokens_exceed_one_batch(lengths)
        with progress_bar(
            len(prompts), self._runner.show_progress, many_batches=many, description="reranking"
        ) as bar:
            for group in shared:
                try:
                    prefix = self._runner.prefix_cache(prompts[group[0]].head)
                except Exception as exc:  # one sequence: nothing to halve
                    if not is_out_of_memory(exc):
                        raise
                    raise MemoryError(
                        "a query's prompt does not fit in memory even alone: lower max_length"
                    ) from exc
                tails = [prompts[i].tail for i in group]
                out[group] = self._score_sequences(tails, bar, prefix)
            if alone:
                out[alone] = self._score_sequences([prompts[i].ids for i in alone], bar)
        return out

    def _score_sequences(
        self, sequences: Sequence[TokenIds], bar: tqdm[Any], prefix: KVCache | None = None
    ) -> np.ndarray:
        """The log-odds of each sequence: whole prompts, or (with ``prefix``, the cached head
        of one query) that query's documents and suffix."""

        def run(batch: np.ndarray) -> np.ndarray:
            return self._log_odds(self._runner.last_hidden([sequences[i] for i in batch], prefix))

        out = np.empty(len(sequences), dtype=np.float32)
        return self._runner.run([len(s) for s in sequences], run, out, bar)


@dataclass
class LocalModel:
    """A model loaded into this process (transformers' or qwen3-rag's decoder, or one compiled
    by OpenVINO), run in token-budget batches by the torch runner above."""

    loaded: LoadedModel
    options: TransformersOptions | OpenVINOOptions
    share_prefix: bool
    """Whether the reranker runs a query's shared prompt prefix once for its documents."""
    base_url: None = None

    @property
    def checkpoint(self) -> Checkpoint:
        return self.loaded.checkpoint

    @property
    def cpu_threads(self) -> CpuThreads | None:
        """torch's threads per pass; OpenVINO's model runs on threads of its own."""
        options = self.options
        return options.cpu_threads if isinstance(options, TransformersOptions) else None

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def dtype(self) -> torch.dtype:
        return self.loaded.dtype

    def embedding(self, model: str, *, max_length: int) -> TransformersEmbeddingBackend:
        return TransformersEmbeddingBackend(
            self.loaded,
            max_batch_tokens=self.options.max_batch_tokens,
            show_progress=self.options.show_progress,
            cpu_threads=self.cpu_threads,
        )

    def reranker(
        self, model: str, *, max_length: int, yes_id: int, no_id: int
    ) -> TransformersRerankBackend:
        # The rows of yes_id and no_id (the checkpoint's own) were read at load.
        return TransformersRerankBackend(
            self.loaded,
            max_batch_tokens=self.options.max_batch_tokens,
            show_progress=self.options.show_progress,
            share_prefix=self.share_prefix,
            cpu_threads=self.cpu_threads,
        )


def open_model(
    model: str | os.PathLike[str], kind: ModelKind, options: TransformersOptions, *, hub: HubOptions
) -> LocalModel:
    """The model loaded for ``options`` (shared with every engine on the same model, device
    and dtype), the options given the device and dtype it resolved."""
    if kind == "embedding" and options.share_prefix is False:
        # Checked before the model is loaded, not after.
        raise ValueError("share_prefix applies to the reranker, not to an embedding model")
    loaded = load_model(model, kind, options, hub=hub)
    share_prefix = options.share_prefix
    if share_prefix is None and kind == "reranker":
        share_prefix = default_share_prefix(loaded.device.type)
    cpu_threads = resolve_cpu_threads(options.cpu_threads, loaded.device)
    resolved = replace(
        options, share_prefix=share_prefix, cpu_threads=cpu_threads, **loaded.resolved
    )
    return LocalModel(loaded, resolved, bool(share_prefix))
