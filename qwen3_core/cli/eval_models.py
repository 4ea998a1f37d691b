"""Internal: the two models of ``qwen3-rag eval``: text Qwen3 models, or Qwen3-VL models, each
recognised by its config.json (``model_type``). A corpus whose records name images needs the
Qwen3-VL ones."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from qwen3_core import prompts
from qwen3_core.backend_options import TransformersOptions
from qwen3_core.cli.eval_checks import EvalRequest, check_eval_models
from qwen3_core.demo.images import VL_EMBEDDING_MODEL, VL_RERANKER_MODEL
from qwen3_core.errors import UsageError

if TYPE_CHECKING:
    from qwen3_core.embedder import Qwen3Embedder
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder
    from qwen3_core.multimodal.reranker import Qwen3VLReranker
    from qwen3_core.reranker import Qwen3Reranker


def is_vl_model(model: str) -> bool:
    """Whether ``model`` (a folder or a hub id) is a Qwen3-VL checkpoint: its config.json
    says ``model_type`` "qwen3_vl". A hub id's config is fetched (not its weights); a model
    that cannot be found is not one here (loading it then says why)."""
    from qwen3_core.errors import ModelNotFoundError
    from qwen3_core.hub import resolve_model_folder

    try:
        folder = resolve_model_folder(model, weights=False)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ModelNotFoundError, OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "qwen3_vl"


def load_eval_engines(
    request: EvalRequest,
) -> tuple[Qwen3Embedder | Qwen3VLEmbedder, Qwen3Reranker | Qwen3VLReranker]:
    """The embedding engine and the reranker of ``request``: the Qwen3-VL engines for Qwen3-VL
    models (and for ``--tiny`` on a corpus with images), else the text engines, after their
    checkpoints are checked against the settings."""
    from qwen3_core.cli.models import load_engines

    images = request.dataset.images
    vl = (
        [True, True]
        if request.tiny and images
        else [False, False]
        if request.tiny
        else [is_vl_model(request.embedding_model), is_vl_model(request.reranker_model)]
    )
    if images and not all(vl):
        option = "--embedding-model" if not vl[0] else "--reranker-model"
        named = request.embedding_model if not vl[0] else request.reranker_model
        raise UsageError(
            f"the corpus has {images} document(s) with an image, which {option} '{named}' "
            f"cannot read: pass Qwen3-VL models (such as {VL_EMBEDDING_MODEL} and "
            f"{VL_RERANKER_MODEL})"
        )
    if vl[0] != vl[1]:
        raise UsageError(
            "--embedding-model and --reranker-model must both be Qwen3-VL models or both "
            f"text Qwen3 models ('{request.embedding_model}' is "
            f"{'a Qwen3-VL' if vl[0] else 'a text'} model, '{request.reranker_model}' is not)"
        )
    if all(vl):
        return _load_vl(request)
    checkpoints = check_eval_models(request)
    embedder, reranker = load_engines(
        request.embedding_model,
        request.reranker_model,
        tiny=request.tiny,
        backend=request.backend,
        instruction=request.instruction,
        dimensions=request.dimensions,
        max_length=request.max_length,
    )
    del checkpoints  # kept while the engines loaded: they shared its tokenizers
    return embedder, reranker


def _load_vl(request: EvalRequest) -> tuple[Qwen3VLEmbedder, Qwen3VLReranker]:
    from qwen3_core.cli.models import load_vl_engines

    backend = request.backend
    if not isinstance(backend, TransformersOptions) or backend.quantization is not None:
        raise UsageError(
            "the Qwen3-VL models run on --backend transformers (the default), without "
            "--quantization"
        )
    # The text models' default task is left out: each Qwen3-VL model keeps its own.
    instruction = (
        None if request.instruction == prompts.DEFAULT_INSTRUCTION else request.instruction
    )
    return load_vl_engines(
        request.embedding_model,
        request.reranker_model,
        tiny=request.tiny,
        backend=backend,
        instruction=instruction,
        dimensions=request.dimensions,
        max_length=request.max_length,
    )
