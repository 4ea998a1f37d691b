"""Internal: loading the two models, the one slow step of start-up: the engine is imported here
only."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from qwen3_core.backend_options import BackendOptions, TransformersOptions
from qwen3_core.cli.checks import DemoRequest
from qwen3_core.defaults import MAX_LENGTH
from qwen3_core.errors import UsageError
from qwen3_core.extras import Extra, missing_message

if TYPE_CHECKING:
    from qwen3_core.demo.search import TwoStageSearch
    from qwen3_core.embedder import Qwen3Embedder
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder
    from qwen3_core.multimodal.reranker import Qwen3VLReranker
    from qwen3_core.reranker import Qwen3Reranker


def load_models(request: DemoRequest) -> TwoStageSearch:
    """The demo's two-stage search on the engines ``load_engines`` loads."""
    embedder, reranker = load_engines(
        request.embedding_model,
        request.reranker_model,
        tiny=request.tiny,
        backend=request.backend,
        instruction=request.instruction,
    )
    from qwen3_core.demo.search import TwoStageSearch

    return TwoStageSearch(embedder, reranker, request.budget)


def load_engines(
    embedding_model: str,
    reranker_model: str,
    *,
    tiny: bool,
    backend: BackendOptions,
    instruction: str,
    dimensions: int | None = None,
    max_length: int = MAX_LENGTH,
) -> tuple[Qwen3Embedder, Qwen3Reranker]:
    """The two engines (the tiny random models with ``tiny``); prints what it loads and how
    long it took (importing the libraries included: the wait is the same to the user)."""
    check_installed(tiny=tiny, backend=backend)
    start = time.perf_counter()
    _quiet_libraries()
    from qwen3_core.embedder import Qwen3Embedder
    from qwen3_core.reranker import Qwen3Reranker

    if tiny:
        from qwen3_core.testing import build_test_models

        print("Using tiny RANDOM offline models: the pipeline is real, the ranking is random.")
        # In models_cache_folder(), built on the first run only: say why that run is slow.
        models = build_test_models(shape="tiny", on_build=_say_building)
        embedding_model, reranker_model = str(models.embedding), str(models.reranker)
    print(f"Loading the embedding model {embedding_model} ...")
    embedder = Qwen3Embedder(
        embedding_model,
        backend=backend,
        instruction=instruction,
        dimensions=dimensions,
        max_length=max_length,
    )
    print(f"Loading the reranker {reranker_model} ...")
    reranker = Qwen3Reranker(
        reranker_model, backend=backend, instruction=instruction, max_length=max_length
    )
    seconds = time.perf_counter() - start
    print(f"Loaded the embedding and reranker models in {seconds:.1f} s.")
    return embedder, reranker


def check_installed(*, tiny: bool, backend: BackendOptions) -> None:
    """A ``UsageError`` naming what to install when a package the run needs is missing
    (checked before anything is imported)."""
    needs: list[tuple[str, Extra]] = [("--tiny", "testing")] if tiny else []
    if backend.name == "transformers":
        needs.append(("--backend transformers (the default) runs the models here and", "torch"))
    elif backend.name in ("openvino", "vllm"):
        needs.append((f"--backend {backend.name}", backend.name))
    for needed_by, extra in needs:
        problem = missing_message(needed_by, extra)
        if problem is not None:
            raise UsageError(problem)


def _say_building() -> None:
    print(
        "Building the offline tiny models (first run only, about 20 s)...",
        file=sys.stderr,
        flush=True,
    )


def _quiet_libraries() -> None:
    """Model-loading progress bars and notices would bury the demo's own output."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # installed as a client of model servers: nothing to quiet
        return
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def load_vl_engines(
    embedding_model: str,
    reranker_model: str,
    *,
    tiny: bool,
    backend: TransformersOptions,
    instruction: str | None,
    dimensions: int | None = None,
    max_length: int | None = None,
) -> tuple[Qwen3VLEmbedder, Qwen3VLReranker]:
    """The two Qwen3-VL engines (the tiny random ones with ``tiny``); prints what it loads and
    how long it took."""
    check_installed(tiny=tiny, backend=backend)
    start = time.perf_counter()
    _quiet_libraries()
    from qwen3_core.defaults import VL_EMBEDDING_MAX_LENGTH, VL_RERANKER_MAX_LENGTH
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder
    from qwen3_core.multimodal.prompts import RERANK_INSTRUCTION
    from qwen3_core.multimodal.reranker import Qwen3VLReranker

    if tiny:
        from qwen3_core.testing import build_vl_test_models

        print(
            "Using tiny RANDOM offline Qwen3-VL models: the pipeline is real, the ranking is "
            "random."
        )
        models = build_vl_test_models(on_build=_say_building)
        embedding_model, reranker_model = str(models.embedding), str(models.reranker)
    print(f"Loading the embedding model {embedding_model} ...")
    embedder = Qwen3VLEmbedder(
        embedding_model,
        backend=backend,
        instruction=instruction,
        dimensions=dimensions,
        max_length=max_length or VL_EMBEDDING_MAX_LENGTH,
    )
    print(f"Loading the reranker {reranker_model} ...")
    reranker = Qwen3VLReranker(
        reranker_model,
        backend=backend,
        instruction=instruction or RERANK_INSTRUCTION,
        max_length=max_length or VL_RERANKER_MAX_LENGTH,
    )
    seconds = time.perf_counter() - start
    print(f"Loaded the embedding and reranker models in {seconds:.1f} s.")
    return embedder, reranker
