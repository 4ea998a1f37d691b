"""Internal (import its public names from ``qwen3_core``): ``Qwen3VLEmbedder``:
Qwen3-VL-Embedding as a function from texts, images and both together to unit vectors in one
space."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence

import numpy as np

from qwen3_core.backend_options import BackendChoice
from qwen3_core.defaults import (
    DEFAULT_VL_EMBEDDING_MODEL,
    REMOTE_IMAGE_MAX_BYTES,
    REMOTE_IMAGE_TIMEOUT,
    VL_EMBEDDING_MAX_LENGTH,
)
from qwen3_core.engine import check_finite
from qwen3_core.hub import ModelSource
from qwen3_core.multimodal import prompts
from qwen3_core.multimodal.engine import VLEngineBase, check_remote
from qwen3_core.multimodal.inputs import Item, MultimodalInput, check_inputs
from qwen3_core.multimodal.server import VLServerEmbedding
from qwen3_core.validation import check_int, check_optional_int, check_text

"""The official embedder's longest prompt."""


class Qwen3VLEmbedder(VLEngineBase):
    """Embeds texts, images and mixed inputs with a Qwen3-VL-Embedding model, into one
    space: a text query finds images, an image finds texts.

    Each input gets the official prompt (a system turn with the instruction, a user turn
    with its images, then its texts) and is embedded as the hidden state of the last token
    (the newline after ``assistant``), cut to ``dimensions`` (Matryoshka) and L2-normalised.
    Documents get the official default instruction, "Represent the user's input."; queries
    get a task instruction. Images are sized as the official code sizes them (4 to 1,800
    tokens each). See docs/multimodal.md.

    ```python
    from pathlib import Path

    from qwen3_core import Qwen3VLEmbedder

    embedder = Qwen3VLEmbedder("Qwen/Qwen3-VL-Embedding-2B")
    vectors = embedder.embed_documents(
        ["a text", Path("page-3.png"), {"text": "caption", "image": Path("fig.png")}]
    )
    queries = embedder.embed_queries(["revenue chart for 2024"])
    ```

    Args:
        model: Hugging Face hub id or local folder of a Qwen3-VL-Embedding checkpoint.
        backend: ``"transformers"`` or ``TransformersOptions(device=..., dtype=...,
            max_batch_tokens=..., show_progress=..., model_kwargs=...)``: float32 on CPU,
            bfloat16 (or float16 on older GPUs) on CUDA by default. Or
            ``ServerOptions(base_url=...)``: vLLM servers run the model (see
            docs/multimodal.md, "On vLLM").
        instruction: The task given to queries; each call may give its own. None:
            ``QUERY_INSTRUCTION``. A full stop is added when it ends in no punctuation.
        dimensions: Keep the first N dimensions (Matryoshka) before normalising; None: all.
        max_length: Longest prompt in tokens before its closing five; a longer input's
            text is cut (its images and the prompt's frame are kept).
        allow_remote_images: Fetch images given as ``http(s)://`` addresses. Off by
            default: a library that fetches addresses found in documents can be made to
            reach internal services.
        remote_image_max_bytes: The largest image download.
        remote_image_timeout: Seconds for connecting and for each read of a download.
        revision: For a hub id: the branch, tag or commit to download.
        token: For a hub id: the access token (True: the one saved by ``hf auth login``).
        cache_dir: For a hub id: where downloads are kept.
        local_files_only: For a hub id: use only what is already downloaded.
        source: ``"huggingface"`` or ``"modelscope"``.

    Raises:
        ModelKindError: The checkpoint is not a Qwen3-VL model this class loads (a text
            Qwen3 model is refused naming the class that loads it).
        ModelNotFoundError: The model is neither a folder nor a hub id that can be fetched.
        ValueError: A setting is out of range, or a backend other than transformers.
    """

    _kind = "embedding"

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_VL_EMBEDDING_MODEL,
        *,
        backend: BackendChoice = "transformers",
        instruction: str | None = None,
        dimensions: int | None = None,
        max_length: int = VL_EMBEDDING_MAX_LENGTH,
        allow_remote_images: bool = False,
        remote_image_max_bytes: int = REMOTE_IMAGE_MAX_BYTES,
        remote_image_timeout: float = REMOTE_IMAGE_TIMEOUT,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        source: ModelSource | None = None,
    ) -> None:
        self._backend_or_none = None
        if instruction is not None:
            check_text("instruction", instruction)
        self.instruction = instruction if instruction is not None else prompts.QUERY_INSTRUCTION
        """The task queries get unless a call gives its own."""
        self.max_length = check_int("max_length", max_length, minimum=prompts.CLOSING_TOKENS)
        check_optional_int("dimensions", dimensions, minimum=1)
        remote = check_remote(allow_remote_images, remote_image_max_bytes, remote_image_timeout)
        hub = (revision, token, cache_dir, local_files_only, source)
        self._open(model, backend, self.max_length, remote, hub)
        if self._server is None:
            self._hidden_size = self._loaded.checkpoint.hidden_size
        self.dimensions = check_optional_int(
            "dimensions", dimensions, minimum=1, maximum=self._hidden_size
        )

    @property
    def dimension(self) -> int:
        """Length of the returned vectors."""
        return self.dimensions or self._hidden_size

    def embed_documents(self, inputs: Sequence[MultimodalInput]) -> np.ndarray:
        """float32 (len(inputs), dimension), rows L2-normalised, with the official default
        instruction. Each input is a str (text), a ``PIL.Image.Image`` or ``pathlib.Path``
        (an image), or a mapping with ``"text"`` and/or ``"image"``.

        Raises:
            TypeError: An input is of a type no input takes.
            ImageInputError: An image cannot be used; the message names the input.
            FloatingPointError: The model produced NaN or inf.
        """
        return self._embed(check_inputs("inputs", inputs), prompts.EMBEDDING_INSTRUCTION)

    def embed_queries(
        self, inputs: Sequence[MultimodalInput], instruction: str | None = None
    ) -> np.ndarray:
        """Like ``embed_documents``, with ``instruction`` (default: the engine's) as the
        system message. Queries may be images or mixed inputs too."""
        return self._embed(check_inputs("inputs", inputs), self._task(instruction))

    async def aembed_documents(self, inputs: Sequence[MultimodalInput]) -> np.ndarray:
        """``embed_documents``, awaitable (the model runs in a worker thread)."""
        return await asyncio.to_thread(self.embed_documents, inputs)

    async def aembed_queries(
        self, inputs: Sequence[MultimodalInput], instruction: str | None = None
    ) -> np.ndarray:
        """``embed_queries``, awaitable (the model runs in a worker thread)."""
        return await asyncio.to_thread(self.embed_queries, inputs, instruction)

    def tokenize(
        self, inputs: Sequence[MultimodalInput], instruction: str | None = None
    ) -> list[np.ndarray]:
        """The token ids the model sees for each input (``instruction`` None: the documents'
        default), each image's tokens in place."""
        items = check_inputs("inputs", inputs)
        task = prompts.EMBEDDING_INSTRUCTION if instruction is None else self._task(instruction)
        ids: list[np.ndarray] = []
        for _, encoded in self._chunks(len(items), self._prompts(items, task)):
            ids += [e.ids for e in encoded]
        return ids

    def _task(self, instruction: str | None) -> str:
        task = self.instruction if instruction is None else check_text("instruction", instruction)
        return prompts.embedding_instruction(task)

    @staticmethod
    def _prompts(items: list[Item], task: str):  # type: ignore[no-untyped-def]
        def prompts_of(indices: range) -> Iterator[tuple[list[object], list[Item], str]]:
            for i in indices:
                yield list(prompts.embedding_prompt(items[i], task)), [items[i]], items[i].label

        return prompts_of

    def _embed(self, items: list[Item], task: str) -> np.ndarray:
        self._backend  # noqa: B018 (a closed engine fails before any work)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        width = self.dimension
        server = self._server
        if isinstance(server, VLServerEmbedding):
            for indices, sent in self._served(len(items), self._prompts(items, task)):
                states = server.embed_prompts(sent)[:, :width]
                norms = np.linalg.norm(states, axis=1, keepdims=True)
                out[indices.start : indices.stop] = states / np.maximum(norms, 1e-12)
            return out
        for indices, encoded in self._chunks(len(items), self._prompts(items, task)):
            states = self._run(encoded, lambda s: s[:, :width], width, "embedding")
            states = check_finite(states, "embeddings")
            norms = np.linalg.norm(states, axis=1, keepdims=True)
            out[indices.start : indices.stop] = states / np.maximum(norms, 1e-12)
        return out

    def __repr__(self) -> str:
        return (
            f"Qwen3VLEmbedder({str(self.model_path)!r}, {self._placement()}, "
            f"dimension={self.dimension})"
        )
