"""Every error qwen3-rag raises about models, files, servers and data is a ``Qwen3RagError`` and
still the builtin it has always been, raised here by real calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen3_core import (
    ModelKindError,
    ModelNotFoundError,
    Qwen3Embedder,
    Qwen3RagError,
    Qwen3Reranker,
    ServerError,
    ServerOptions,
)
from qwen3_core.testing import ModelPaths
from tests.options import CPU

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_each_error_is_ours_and_its_builtin(test_models: ModelPaths, tmp_path: Path) -> None:
    cases: list[tuple[type[Exception], type[Exception], object]] = [
        (ModelKindError, ValueError, lambda: Qwen3Embedder(test_models.reranker, backend=CPU)),
        (ModelNotFoundError, OSError, lambda: Qwen3Reranker(tmp_path / "missing", backend=CPU)),
        (
            ServerError,
            RuntimeError,
            lambda: Qwen3Embedder(
                test_models.embedding,
                backend=ServerOptions(base_url=DEAD, max_retries=0, timeout=2),
            ).embed_documents(["text"]),
        ),
    ]
    for error, builtin, call in cases:
        assert issubclass(error, Qwen3RagError) and issubclass(error, builtin)
        with pytest.raises(error) as raised:
            call()  # type: ignore[operator]
        assert isinstance(raised.value, Qwen3RagError) and isinstance(raised.value, builtin)
