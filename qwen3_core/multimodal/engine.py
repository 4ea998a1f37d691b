"""Internal: what the two Qwen3-VL engines share: opening the model, the options they take, and
turning inputs into model inputs chunk by chunk (so that images are decoded a few at a
time, never all at once)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from qwen3_core.backend_options import (
    BackendChoice,
    ServerOptions,
    TransformersOptions,
    backend_options,
)
from qwen3_core.engine import EngineBase, logger
from qwen3_core.extras import require_extra
from qwen3_core.hub import HubOptions, ModelSource
from qwen3_core.kernels.shared_cores import resolve_cpu_threads
from qwen3_core.multimodal.encoding import Encoded, Image, PromptEncoder
from qwen3_core.multimodal.images import RemoteImages
from qwen3_core.multimodal.inputs import Item
from qwen3_core.multimodal.loading import LoadedVLModel, VLKind, load_vl_model
from qwen3_core.multimodal.runtime import SharedImages, VLRuntime
from qwen3_core.multimodal.server import (
    PromptSender,
    ServerPrompt,
    VLServerEmbedding,
    VLServerRerank,
    open_on_servers,
)
from qwen3_core.validation import check_int
from qwen3_core.variants import Variant

if TYPE_CHECKING:
    import numpy as np

Loaded = TypeVar("Loaded")
"""An item's images as one backend loads them."""
Prompt = TypeVar("Prompt")
"""A prompt as one backend runs or sends it."""

CHUNK = 16
"""Inputs whose images are decoded and patched at a time: at most 16 x 44 MB of float32
patches for images of the largest size."""


def check_remote(allow: bool, max_bytes: int, timeout: float) -> RemoteImages:
    """The remote-image settings, checked."""
    if not isinstance(allow, bool):
        raise TypeError(f"allow_remote_images must be True or False, got {allow!r}")
    check_int("remote_image_max_bytes", max_bytes, minimum=1)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"remote_image_timeout must be a positive number, got {timeout!r}")
    return RemoteImages(allow, int(max_bytes), float(timeout))


class VLEngineBase(EngineBase[VLRuntime]):
    """Opens a Qwen3-VL checkpoint on the transformers backend."""

    _kind: VLKind
    _encoder: PromptEncoder
    _loaded: LoadedVLModel

    def _open(
        self,
        model: str | os.PathLike[str],
        backend: BackendChoice,
        max_length: int,
        remote: RemoteImages,
        hub: tuple[
            str | None, str | bool | None, str | os.PathLike[str] | None, bool, ModelSource | None
        ],
    ) -> None:
        self._backend_or_none = None
        require_extra(type(self).__name__, "multimodal")  # Pillow reads the images
        options = backend_options(backend)
        if isinstance(options, ServerOptions):
            self._open_server(model, options, max_length, remote, HubOptions(*hub))
            return
        if not isinstance(options, TransformersOptions):
            raise ValueError(
                f"{type(self).__name__} runs on the transformers backend (in this process, "
                f"CPU or GPU) or on vLLM servers (ServerOptions), not on "
                f"backend={options.name!r}"
            )
        loaded = load_vl_model(os.fspath(model), self._kind, options, HubOptions(*hub))
        self._loaded = loaded
        checkpoint = loaded.checkpoint
        self._encoder = PromptEncoder(checkpoint.folder, loaded.tokenizer, max_length, remote)
        cpu_threads = resolve_cpu_threads(options.cpu_threads, loaded.device)
        # What runs: device, dtype, kernel, threads.
        self.options = replace(options, cpu_threads=cpu_threads, **loaded.resolved)
        self.backend = "transformers"
        self.device, self.dtype = loaded.device, loaded.dtype
        self.model_path = checkpoint.folder
        self.base_url = None
        self.variant = Variant(self._kind, "base", f"Qwen3-VL, {checkpoint.layout} layout")
        self._backend_or_none = VLRuntime(
            loaded,
            pad_id=self._encoder.pad_id,
            image_pad_id=self._encoder.image_pad_id,
            max_batch_tokens=options.max_batch_tokens,
            show_progress=options.show_progress,
            cpu_threads=cpu_threads,
        )

    def _open_server(
        self,
        model: str | os.PathLike[str],
        options: ServerOptions,
        max_length: int,
        remote: RemoteImages,
        hub: HubOptions,
    ) -> None:
        """The checkpoint's config and tokenizer only: the servers hold the weights."""
        served = open_on_servers(model, self._kind, options, max_length, remote, hub)
        self._encoder, self._sender = served.encoder, PromptSender(served.encoder)
        self._hidden_size = served.hidden_size
        self.options = options
        self.backend = "server"
        self.device = self.dtype = None
        self.model_path = served.folder
        self.base_url = options.urls
        self.variant = Variant(self._kind, "base", "Qwen3-VL, on servers")
        # Closed with the engine, as the transformers runtime is.
        self._backend_or_none = served.backend  # type: ignore[assignment]

    @property
    def _server(self) -> VLServerEmbedding | VLServerRerank | None:
        """The servers' client; None on the transformers backend."""
        backend: object = self._backend
        return backend if isinstance(backend, (VLServerEmbedding, VLServerRerank)) else None

    def _served(
        self,
        count: int,
        prompts_of: Callable[[range], Iterator[tuple[list[object], list[Item], str]]],
        shared: Sequence[Item] = (),
    ) -> Iterator[tuple[range, list[ServerPrompt]]]:
        """``_chunks`` for an engine on servers: the prompts as sent (see
        ``qwen3_core.multimodal.server``)."""
        sender = self._sender
        kept = {id(item): sender.images(item) for item in shared}
        # segments are typed loosely here, as where _chunks encodes them
        return self._chunked(count, prompts_of, kept, sender.images, sender.prompt)  # type: ignore[arg-type]

    @property
    def allow_remote_images(self) -> bool:
        """Whether ``http(s)://`` images are fetched."""
        return self._encoder.remote.allowed

    @property
    def remote_image_max_bytes(self) -> int:
        """The largest image download, in bytes."""
        return self._encoder.remote.max_bytes

    @property
    def remote_image_timeout(self) -> float:
        """Seconds for connecting and for each read of an image download."""
        return self._encoder.remote.timeout

    def _chunks(
        self,
        count: int,
        prompts_of: Callable[[range], Iterator[tuple[list[object], list[Item], str]]],
        shared: Sequence[Item] = (),
        shared_images: SharedImages | None = None,
    ) -> Iterator[tuple[range, list[Encoded]]]:
        """Encoded prompts, CHUNK inputs at a time; ``prompts_of(indices)`` yields each
        prompt's segments, the items whose images its slots name, and its label. The images
        of ``shared`` items (a query judged against every document) are decoded once, and
        named in ``shared_images`` so that the vision tower sees them once."""

        def decode(item: Item) -> list[Image]:
            return self._encoder.images([item])[0]

        def encode(
            segments: list[object], images: list[list[Image]], label: str
        ) -> tuple[Encoded, int]:
            prompt = self._encoder.encode(segments, images, label)  # type: ignore[arg-type]
            return prompt, prompt.truncated

        kept = {id(item): decode(item) for item in shared}
        for image in (i for images in kept.values() for i in images):
            if shared_images is not None:
                shared_images.share(image)
        return self._chunked(count, prompts_of, kept, decode, encode)

    def _chunked(
        self,
        count: int,
        prompts_of: Callable[[range], Iterator[tuple[list[object], list[Item], str]]],
        kept: dict[int, Loaded],
        load: Callable[[Item], Loaded],
        build: Callable[[list[object], list[Loaded], str], tuple[Prompt, int]],
    ) -> Iterator[tuple[range, list[Prompt]]]:
        """The prompts ``build`` makes, CHUNK inputs at a time, each item's images loaded
        once per chunk by ``load`` (those in ``kept`` once per call); one warning for the
        inputs whose text was cut."""
        truncated = 0
        for start in range(0, count, CHUNK):
            indices = range(start, min(count, start + CHUNK))
            loaded = dict(kept)
            built = []
            for segments, items, label in prompts_of(indices):
                for item in items:
                    if id(item) not in loaded:
                        loaded[id(item)] = load(item)
                prompt, cut = build(segments, [loaded[id(item)] for item in items], label)
                truncated += cut
                built.append(prompt)
            yield indices, built
        if truncated:
            logger.warning(
                "%d of %d inputs exceeded max_length=%d tokens and their text was cut (images "
                "and the prompt's frame were kept)",
                truncated,
                count,
                self._encoder.max_length,
            )

    def _run(
        self,
        encoded: Sequence[Encoded],
        finish: Callable[..., object],
        width: int,
        what: str,
        shared_images: SharedImages | None = None,
    ) -> np.ndarray:
        return self._backend.run(encoded, finish, width, what, shared_images)
