"""The transformers/torch backend (CPU or GPU).

Batches are right-padded and run without an attention mask: under the causal mask no real
token can see the padding that follows it, so each sequence's result does not depend on its
batch, and SDPA takes its mask-free causal kernel. Only the last real position is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from qwen3_core.batching import run_batched
from qwen3_core.loading import LoadedModel
from qwen3_core.tokenization import RerankPrompt, TokenIds

# Padded tokens per batch. CPU throughput is flat beyond a few thousand tokens; a GPU wants
# large batches to fill its units.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}
DEFAULT_MAX_BATCH_SIZE = 256


def default_max_batch_tokens(device: torch.device) -> int:
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
    ) -> None:
        self.loaded = loaded
        self.device = loaded.device
        self.decoder = decoder
        self.max_batch_tokens = max_batch_tokens or default_max_batch_tokens(loaded.device)
        self.max_batch_size = max_batch_size
        self.show_progress = show_progress
        pad = loaded.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else 0)

    def last_hidden(self, sequences: Sequence[TokenIds]) -> torch.Tensor:
        """Hidden states (after the final norm) at each sequence's last position: (B, hidden)."""
        lengths = torch.tensor([len(s) for s in sequences])
        ids = torch.full((len(sequences), int(lengths.max())), self.pad_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.from_numpy(seq)
        if self.device.type == "cuda":
            ids = ids.pin_memory()
        ids = ids.to(self.device, non_blocking=True)
        with torch.inference_mode():
            hidden = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
            rows = torch.arange(len(sequences), device=self.device)
            last: torch.Tensor = hidden[rows, lengths.to(self.device) - 1]
            return last

    def run(
        self,
        lengths: Sequence[int],
        fn: Callable[[np.ndarray], np.ndarray],
        out: np.ndarray,
        description: str,
    ) -> np.ndarray:
        return run_batched(
            lengths,
            fn,
            out,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=self.max_batch_size,
            show_progress=self.show_progress,
            description=description,
        )


class TransformersEmbeddingBackend:
    """Last-token hidden states of a ``Qwen3Model``."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_tokens: int | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        show_progress: bool | None = None,
    ) -> None:
        self._runner = _TorchRunner(
            loaded,
            loaded.model,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size,
            show_progress=show_progress,
        )
        self._hidden_size = int(loaded.config["hidden_size"])

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    def embed(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        out = np.empty((len(sequences), self._hidden_size), dtype=np.float32)

        def run(batch: np.ndarray) -> np.ndarray:
            states = self._runner.last_hidden([sequences[i] for i in batch])
            return states.float().cpu().numpy()

        return self._runner.run([len(s) for s in sequences], run, out, "embedding")


class TransformersRerankBackend:
    """P(yes) from a ``Qwen3ForCausalLM``: the base model's last hidden state times the two
    lm_head rows of "yes" and "no", never the full-vocabulary logits."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        yes_id: int,
        no_id: int,
        max_batch_tokens: int | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        show_progress: bool | None = None,
    ) -> None:
        model = loaded.model
        self._runner = _TorchRunner(
            loaded,
            model.get_decoder(),  # type: ignore[operator]
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size,
            show_progress=show_progress,
        )
        head = model.get_output_embeddings()  # type: ignore[operator]
        # Rows [no, yes], kept in float32 so the two logits are exact for the hidden state.
        self._rows = head.weight[[no_id, yes_id]].detach().float()

    def score(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        out = np.empty(len(prompts), dtype=np.float32)

        def run(batch: np.ndarray) -> np.ndarray:
            states = self._runner.last_hidden([prompts[i].ids for i in batch])
            logits = states.float() @ self._rows.T  # (B, 2): [no, yes]
            return torch.log_softmax(logits, dim=-1)[:, 1].exp().cpu().numpy()

        return self._runner.run([len(p) for p in prompts], run, out, "reranking")
