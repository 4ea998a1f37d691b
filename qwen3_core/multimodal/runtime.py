"""Internal: running a ``Qwen3VLModel`` on encoded prompts, in batches of a token budget.

A batch is right-padded with an attention mask; the model's own forward runs the vision
tower, puts the image features in place, adds the deepstack features to the first decoder
layers and computes the multimodal rotary positions. Each prompt's result is its last real
position's hidden state. Image tokens count towards the budget like any other token.

An image that every prompt of a call shows (a reranker's query image, judged against each
document) goes through the vision tower once per call (``SharedImages``): its outputs (the
merged features and the deepstack features) are kept and given to the model's forward as
``mm_encoder_outputs``, which puts them in place as it would its own. The vision tower sees
each image on its own (its attention does not cross images), so the features are those the
full forward computes, up to the summation order of a GEMM over more or fewer rows.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qwen3_core.backend_options import CpuThreads
from qwen3_core.batching import OutOfMemoryBackoff, progress_bar, run_batched
from qwen3_core.devices import cuda_batch_tokens
from qwen3_core.kernels.shared_cores import forward_threads
from qwen3_core.multimodal.encoding import Encoded, Image
from qwen3_core.multimodal.loading import LoadedVLModel

DEFAULT_CPU_BATCH_TOKENS = 2048
"""Tokens per forward pass on CPU: one image can take 1,800."""
DEFAULT_MAX_BATCH_SIZE = 64


Features = tuple[torch.Tensor, list[torch.Tensor]]
"""One image's vision tower outputs: its merged features and its deepstack features."""


class SharedImages:
    """The images that every prompt of one call shows, and their vision tower outputs once
    computed: made for one call, dropped with it (so memory holds them only meanwhile)."""

    def __init__(self) -> None:
        self._images: dict[int, Image] = {}
        """Held, so that each id stays its image's for the call."""
        self._features: dict[int, Features] = {}

    def share(self, image: Image) -> None:
        """Keep ``image``'s outputs for the call once they are computed."""
        self._images[id(image)] = image

    def __bool__(self) -> bool:
        return bool(self._images)

    def __contains__(self, image: Image) -> bool:
        return id(image) in self._images

    def get(self, image: Image) -> Features | None:
        return self._features.get(id(image))

    def keep(self, image: Image, features: Features) -> None:
        if image in self:
            self._features[id(image)] = features


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
        cpu_threads: CpuThreads | None,
    ) -> None:
        self.loaded: LoadedVLModel | None = loaded
        self.cpu_threads = cpu_threads
        self.device = loaded.device
        self.pad_id = pad_id
        self.image_pad_id = image_pad_id
        self.show_progress = show_progress
        self.max_batch_tokens = max_batch_tokens or _default_budget(loaded)
        self.backoff = OutOfMemoryBackoff()
        self._outputs = _vision_outputs_class(loaded.model)

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

    def _batch(self, prompts: Sequence[Encoded], shared: SharedImages | None) -> torch.Tensor:
        lengths = torch.tensor([len(p.ids) for p in prompts])
        ids = torch.full((len(prompts), int(lengths.max())), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt.ids)] = torch.from_numpy(prompt.ids)
            mask[row, : len(prompt.ids)] = 1
        kwargs: dict[str, Any] = {}
        images = [image for p in prompts for image in p.images]
        with torch.inference_mode(), forward_threads(self.cpu_threads):
            if images:
                kwargs["image_grid_thw"] = torch.from_numpy(
                    np.stack([grid for _, grid in images])
                ).to(self.device)
                kwargs["mm_token_type_ids"] = (ids == self.image_pad_id).int().to(self.device)
                if shared and self._outputs is not None and any(i in shared for i in images):
                    kwargs["mm_encoder_outputs"] = {"image": self._features(images, shared)}
                else:
                    kwargs["pixel_values"] = self._pixels(images)
            hidden = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                use_cache=False,
                **kwargs,
            ).last_hidden_state
            rows = torch.arange(len(prompts), device=self.device)
            last: torch.Tensor = hidden[rows, lengths.to(self.device) - 1]
            return last

    def _pixels(self, images: Sequence[Image]) -> torch.Tensor:
        dtype = self.loaded.dtype if self.loaded else torch.float32
        pixels = np.concatenate([patches for patches, _ in images])
        return torch.from_numpy(pixels).to(self.device, dtype)

    def _features(self, images: Sequence[Image], shared: SharedImages) -> Any:
        """The vision tower's outputs for ``images`` (in order) as the model's forward takes
        them: each distinct image not yet computed goes through the tower once, with the
        others of the batch, and the shared ones are kept for the call."""
        known: dict[int, Features] = {}
        for image in images:
            held = shared.get(image)
            if held is not None:
                known[id(image)] = held
        missing = list({id(i): i for i in images if id(i) not in known}.values())
        if missing:
            model: Any = self.model
            output = model.get_image_features(
                pixel_values=self._pixels(missing),
                image_grid_thw=torch.from_numpy(np.stack([g for _, g in missing])).to(self.device),
                return_dict=True,
            )
            for index, image in enumerate(missing):
                features = (
                    output.pooler_output[index],
                    [layer[index] for layer in output.deepstack_features],
                )
                known[id(image)] = features
                shared.keep(image, features)
        chosen = [known[id(i)] for i in images]
        assert self._outputs is not None
        return self._outputs(
            pooler_output=tuple(merged for merged, _ in chosen),
            deepstack_features=[
                tuple(deep[n] for _, deep in chosen) for n in range(len(chosen[0][1]))
            ],
        )

    def run(
        self,
        prompts: Sequence[Encoded],
        finish: Any,
        width: int,
        description: str,
        shared: SharedImages | None = None,
    ) -> np.ndarray:
        """``finish(states)`` of each prompt's last hidden state: float32 (n, width), or
        (n,) for width 0, in input order. The vision tower outputs of ``shared`` images are
        computed once and kept in it."""
        out = np.empty((len(prompts), width) if width else len(prompts), dtype=np.float32)
        lengths = [len(p.ids) for p in prompts]

        def one(batch: np.ndarray) -> np.ndarray:
            states = self._batch([prompts[i] for i in batch], shared)
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


def _vision_outputs_class(model: torch.nn.Module) -> Any:
    """The class in which the model's forward takes vision tower outputs computed before
    (``mm_encoder_outputs``, from transformers 5 on), or None: then every image goes through
    the vision tower in each forward pass."""
    if "mm_encoder_outputs" not in inspect.signature(model.forward).parameters:
        return None
    module = inspect.getmodule(type(model))
    return getattr(module, "BaseModelOutputWithDeepstackFeatures", None)


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
