"""Internal: running a ``Qwen3VLModel`` on encoded prompts, in batches of a token budget.

A batch is right-padded with an attention mask; the model's own forward runs the vision
tower, puts the image features in place, adds the deepstack features to the first decoder
layers and computes the multimodal rotary positions. Each prompt's result is its last real
position's hidden state. Image tokens count towards the budget like any other token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qwen3_core.batching import OutOfMemoryBackoff, progress_bar, run_batched
from qwen3_core.devices import cuda_batch_tokens
from qwen3_core.multimodal.encoding import Encoded
from qwen3_core.multimodal.loading import LoadedVLModel

DEFAULT_CPU_BATCH_TOKENS = 2048
"""Tokens per forward pass on CPU: one image can take 1,800."""
DEFAULT_MAX_BATCH_SIZE = 64


class VLRuntime:
    """Last hidden states of encoded prompts."""

    def __init__(
        self,
        loaded: LoadedVLModel,
        *,
        pad_id: int,
        image_pad_id: int,
        max_batch_tokens: int | None,
        show_progress: bool | None,
    ) -> None:
        self.loaded: LoadedVLModel | None = loaded
        self.device = loaded.device
        self.pad_id = pad_id
        self.image_pad_id = image_pad_id
        self.show_progress = show_progress
        self.max_batch_tokens = max_batch_tokens or _default_budget(loaded)
        self.backoff = OutOfMemoryBackoff()

    @property
    def model(self) -> torch.nn.Module:
        if self.loaded is None:
            raise RuntimeError("this engine is closed")
        return self.loaded.model

    @property
    def loaded_model(self) -> torch.nn.Module:
        """The torch model (shared by engines on the same model, device and dtype)."""
        return self.model

    def close(self) -> None:
        self.loaded = None

    def _batch(self, prompts: Sequence[Encoded]) -> torch.Tensor:
        lengths = torch.tensor([len(p.ids) for p in prompts])
        ids = torch.full((len(prompts), int(lengths.max())), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt.ids)] = torch.from_numpy(prompt.ids)
            mask[row, : len(prompt.ids)] = 1
        kwargs: dict[str, Any] = {}
        pixels = [p.pixel_values for p in prompts if p.pixel_values is not None]
        if pixels:
            kwargs["pixel_values"] = torch.from_numpy(np.concatenate(pixels)).to(
                self.device, self.loaded.dtype if self.loaded else torch.float32
            )
            kwargs["image_grid_thw"] = torch.from_numpy(
                np.concatenate([p.grid for p in prompts])
            ).to(self.device)
            kwargs["mm_token_type_ids"] = (ids == self.image_pad_id).int().to(self.device)
        with torch.inference_mode():
            hidden = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                use_cache=False,
                **kwargs,
            ).last_hidden_state
            rows = torch.arange(len(prompts), device=self.device)
            last: torch.Tensor = hidden[rows, lengths.to(self.device) - 1]
            return last

    def run(
        self,
        prompts: Sequence[Encoded],
        finish: Any,
        width: int,
        description: str,
    ) -> np.ndarray:
        """``finish(states)`` of each prompt's last hidden state: float32 (n, width), or
        (n,) for width 0, in input order."""
        out = np.empty((len(prompts), width) if width else len(prompts), dtype=np.float32)
        lengths = [len(p.ids) for p in prompts]

        def one(batch: np.ndarray) -> np.ndarray:
            states = self._batch([prompts[i] for i in batch])
            result: np.ndarray = finish(states).float().cpu().numpy()
            return result

        many = sum(lengths) > self.max_batch_tokens
        with progress_bar(
            len(prompts), self.show_progress, many_batches=many, description=description
        ) as bar:
            return run_batched(
                lengths,
                one,
                out,
                max_batch_tokens=self.max_batch_tokens,
                max_batch_size=DEFAULT_MAX_BATCH_SIZE,
                backoff=self.backoff,
                bar=bar,
            )


def _default_budget(loaded: LoadedVLModel) -> int:
    if loaded.device.type == "cuda":
        text = loaded.checkpoint.config["text_config"]
        free, _ = torch.cuda.mem_get_info(loaded.device)
        return cuda_batch_tokens(
            free,
            hidden_size=int(text["hidden_size"]),
            intermediate_size=int(text["intermediate_size"]),
            element_size=torch.finfo(loaded.dtype).bits // 8,
        )
    return DEFAULT_CPU_BATCH_TOKENS
