"""Internal: prompts to model inputs: token ids with each image's tokens in place, and the images'
patches, as the official processor builds them (without torchvision)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qwen3_core.errors import ModelKindError
from qwen3_core.hub import import_names
from qwen3_core.json_files import read_json
from qwen3_core.multimodal import prompts
from qwen3_core.multimodal.images import MERGE_SIZE, PATCH_SIZE, RemoteImages, load_image
from qwen3_core.multimodal.inputs import Item
from qwen3_core.tokenization import LiteralTokenizer

logger = logging.getLogger("qwen3_core")


Image = tuple[np.ndarray, np.ndarray]
"""One image as the model takes it: float32 (patches, 3 * 2 * 16 * 16) and its int64 (t, h, w)
grid in patches. The same objects stand for the same decoded image in every prompt that shows
it, so the runtime can run each through the vision tower once."""


@dataclass(frozen=True)
class Encoded:
    """One prompt as the model takes it."""

    ids: np.ndarray
    """int64 token ids, each image's ``<|image_pad|>`` repeated once per image token."""
    images: tuple[Image, ...]
    """The prompt's images in prompt order."""
    truncated: bool


class PromptEncoder:
    """Token ids and image patches for prompts, with the checkpoint's tokenizer and image
    processor settings and the official pixel bounds."""

    def __init__(
        self, folder: Path, tokenizer: LiteralTokenizer, max_length: int, remote: RemoteImages
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.remote = remote
        self._ids = {}
        for token in (
            prompts.IM_START,
            prompts.IM_END,
            prompts.VISION_START,
            prompts.VISION_END,
            prompts.IMAGE_PAD,
        ):
            found = self.tokenizer.token_to_id(token)
            if found is None:
                raise ModelKindError(f"'{folder}': the tokenizer has no {token!r} token")
            self._ids[token] = found
        self.image_pad_id = self._ids[prompts.IMAGE_PAD]
        self.pad_id = self.tokenizer.pad_token_id or 0
        self._processor = _image_processor(folder)

    def images(self, items: Sequence[Item]) -> list[list[Image]]:
        """Each input's images as (patches, grid), loaded and resized once each."""
        out: list[list[Image]] = []
        for item in items:
            loaded = [
                load_image(s, _image_label(item, i), self.remote) for i, s in enumerate(item.images)
            ]
            if not loaded:
                out.append([])
                continue
            features = self._processor(images=loaded, do_resize=False, return_tensors="np")
            patches = np.asarray(features["pixel_values"], dtype=np.float32)
            grids = np.asarray(features["image_grid_thw"], dtype=np.int64)
            ends = np.cumsum(grids.prod(axis=1))
            starts = ends - grids.prod(axis=1)
            out.append([(patches[a:b], g) for a, b, g in zip(starts, ends, grids, strict=True)])
        return out

    def encode(
        self,
        segments: list[prompts.Segment],
        images: Sequence[list[Image]],
        label: str,
    ) -> Encoded:
        """The prompt's ids, cut as the official code cuts it: past ``max_length`` tokens
        before the closing five, the special tokens (image tokens included) are kept and
        the other tokens after the first ``max_length`` minus the special ones are dropped.

        ``images[owner][index]``: the (patches, grid) of each image slot's image.

        Raises:
            ValueError: The images alone take more than ``max_length`` tokens.
        """
        runs: list[str] = []
        pieces: list[tuple[str, Any]] = []  # ("text", run index) / ("special", id) / ("image", ...)
        text = ""
        for segment in segments:
            if isinstance(segment, str):
                text += segment
                continue
            if text:
                pieces.append(("text", len(runs)))
                runs.append(text)
                text = ""
            if isinstance(segment, prompts.Special):
                pieces.append(("special", self._ids[segment.token]))
            else:
                pieces.append(("image", images[segment.owner][segment.index]))
        if text:
            pieces.append(("text", len(runs)))
            runs.append(text)
        encoded = self.tokenizer.encode_literal(runs, max_tokens=self.max_length)
        ids: list[np.ndarray] = []
        special: list[np.ndarray] = []
        shown: list[Image] = []
        for kind, value in pieces:
            if kind == "text":
                run = np.asarray(encoded[value], dtype=np.int64)
                ids.append(run)
                special.append(np.zeros(len(run), dtype=bool))
            elif kind == "special":
                ids.append(np.array([value], dtype=np.int64))
                special.append(np.ones(1, dtype=bool))
            else:
                count = int(value[1].prod()) // (MERGE_SIZE * MERGE_SIZE)
                ids.append(np.full(count, self.image_pad_id, dtype=np.int64))
                special.append(np.ones(count, dtype=bool))
                shown.append(value)
        all_ids = np.concatenate(ids)
        is_special = np.concatenate(special)
        closing = prompts.CLOSING_TOKENS
        body, body_special = all_ids[:-closing], is_special[:-closing]
        truncated = False
        if len(body) > self.max_length:
            specials = int(body_special.sum())
            if specials > self.max_length:
                raise ValueError(
                    f"{label}: its images and the prompt's special tokens take {specials} "
                    f"tokens, more than max_length={self.max_length}"
                )
            kept_text = np.cumsum(~body_special) <= self.max_length - specials
            keep = body_special | kept_text
            body = body[keep]
            truncated = True
        return Encoded(np.concatenate([body, all_ids[-closing:]]), tuple(shown), truncated)


def _image_label(item: Item, index: int) -> str:
    return item.label if len(item.images) == 1 else f"{item.label}, image {index}"


def _image_processor(folder: Path) -> Any:
    """The PIL image processor (no torchvision) with the checkpoint's normalisation; the
    official code resizes before it, so its own size bounds are never used."""
    path = folder / "preprocessor_config.json"
    settings = read_json(path) if path.is_file() else {}
    settings = settings if isinstance(settings, dict) else {}
    for name, wanted in (
        ("patch_size", PATCH_SIZE),
        ("merge_size", MERGE_SIZE),
        ("temporal_patch_size", 2),
    ):
        value = settings.get(name, wanted)
        if value != wanted:
            raise ModelKindError(f"'{path}' gives {name}={value!r}; Qwen3-VL's is {wanted}")
    (processor_class,) = import_names(
        "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl", "Qwen2VLImageProcessorPil"
    )
    return processor_class(
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=2,
        image_mean=settings.get("image_mean", [0.5, 0.5, 0.5]),
        image_std=settings.get("image_std", [0.5, 0.5, 0.5]),
        rescale_factor=settings.get("rescale_factor", 1 / 255),
        do_resize=False,
    )
