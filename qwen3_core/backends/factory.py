"""The one place that turns a backend's options and an opened model into a running backend.
Each backend's module is imported only when it is asked for: vLLM's and torch's imports are
heavy, and a server client needs neither."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from qwen3_core.backends.base import EmbeddingBackend, RerankBackend
from qwen3_core.backends.options import (
    OpenVINOOptions,
    ServerOptions,
    TransformersOptions,
    VllmOptions,
)
from qwen3_core.engine import Opened

if TYPE_CHECKING:
    from qwen3_core.backends.http import ServerPool


def _server_pool(options: ServerOptions) -> ServerPool:
    # Imported here: httpx's import costs 0.2 s of every local model's cold start.
    from qwen3_core.backends.http import ServerPool

    return ServerPool(
        options.base_url,  # as given: ``urls`` hides the user information
        api_key=options.api_key,
        timeout=float(options.timeout),
        max_concurrency=options.max_concurrency,
        max_retries=options.max_retries,
    )


def embedding_backend(
    opened: Opened, model: str | os.PathLike[str], *, max_length: int
) -> EmbeddingBackend:
    """The embedding backend that ``opened.options`` names.

    Args:
        opened: The model, opened for its backend.
        model: The model as the user named it (a server serves it under that name).
        max_length: Longest input in tokens.
    """
    options = opened.options
    hidden_size = int(opened.checkpoint.config["hidden_size"])
    if isinstance(options, (TransformersOptions, OpenVINOOptions)):
        # OpenVINO's compiled decoder runs behind the same torch runner.
        assert opened.loaded is not None
        from qwen3_core.backends.transformers import TransformersEmbeddingBackend

        return TransformersEmbeddingBackend(
            opened.loaded,
            max_batch_tokens=options.max_batch_tokens,
            show_progress=options.show_progress,
        )
    if isinstance(options, ServerOptions):
        from qwen3_core.backends.server import ServerEmbeddingBackend

        return ServerEmbeddingBackend(
            _server_pool(options), os.fspath(model), hidden_size=hidden_size
        )
    from qwen3_core.backends.vllm import VllmEmbeddingBackend

    assert isinstance(options, VllmOptions) and opened.dtype is not None
    return VllmEmbeddingBackend(
        opened.checkpoint.folder,
        hidden_size=hidden_size,
        dtype=opened.dtype,
        max_length=max_length,
        options=options,
    )


def rerank_backend(
    opened: Opened,
    model: str | os.PathLike[str],
    *,
    max_length: int,
    yes_id: int,
    no_id: int,
) -> RerankBackend:
    """The reranker backend that ``opened.options`` names.

    Args:
        opened: The model, opened for its backend.
        model: The model as the user named it (a server serves it under that name).
        max_length: Longest prompt in tokens.
        yes_id: The token whose probability is the score.
        no_id: The token it is weighed against.
    """
    options = opened.options
    variant = opened.checkpoint.variant
    if isinstance(options, (TransformersOptions, OpenVINOOptions)):
        from qwen3_core.backends.transformers import TransformersRerankBackend
        from qwen3_core.devices import default_share_prefix

        assert opened.loaded is not None
        if isinstance(options, OpenVINOOptions):
            share_prefix = False  # the compiled decoder keeps no key/value cache
        elif options.share_prefix is None:
            share_prefix = default_share_prefix(opened.loaded.device.type)
        else:
            share_prefix = options.share_prefix
        return TransformersRerankBackend(
            opened.loaded,
            yes_id=yes_id,
            no_id=no_id,
            max_batch_tokens=options.max_batch_tokens,
            show_progress=options.show_progress,
            share_prefix=share_prefix,
        )
    if isinstance(options, ServerOptions):
        from qwen3_core.backends.server import ServerRerankBackend

        return ServerRerankBackend(_server_pool(options), os.fspath(model), variant)
    from qwen3_core.backends.vllm import VllmRerankBackend

    assert isinstance(options, VllmOptions) and opened.dtype is not None
    tokenizer = opened.checkpoint.tokenizer
    no_token, yes_token = tokenizer.id_to_token(no_id), tokenizer.id_to_token(yes_id)
    assert no_token is not None and yes_token is not None
    return VllmRerankBackend(
        opened.checkpoint.folder,
        dtype=opened.dtype,
        max_length=max_length,
        options=options,
        variant=variant,
        score_tokens=(no_token, yes_token),
    )
