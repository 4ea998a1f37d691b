"""Loading the two models, the one slow step of start-up: the engine is imported here only."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from qwen3_core.cli.checks import DemoRequest

if TYPE_CHECKING:
    from qwen3_core.demo.search import TwoStageSearch


def load_models(request: DemoRequest) -> TwoStageSearch:
    """The embedding model and the reranker, ready to search; prints what it loads and how long
    it took (importing the libraries included: the wait is the same to the user)."""
    start = time.perf_counter()
    _quiet_libraries()
    from qwen3_core.demo.search import TwoStageSearch
    from qwen3_core.embedder import Qwen3Embedder
    from qwen3_core.reranker import Qwen3Reranker

    embedding_model, reranker_model = request.embedding_model, request.reranker_model
    if request.tiny:
        from qwen3_core.testing import build_test_models

        print("Using tiny RANDOM offline models: the pipeline is real, the ranking is random.")
        models = build_test_models(shape="tiny")  # in models_cache_folder()
        embedding_model, reranker_model = str(models.embedding), str(models.reranker)
    print(f"Loading the embedding model {embedding_model} ...")
    embedder = Qwen3Embedder(
        embedding_model, backend=request.backend, instruction=request.instruction
    )
    print(f"Loading the reranker {reranker_model} ...")
    reranker = Qwen3Reranker(
        reranker_model, backend=request.backend, instruction=request.instruction
    )
    seconds = time.perf_counter() - start
    print(f"Loaded the embedding and reranker models in {seconds:.1f} s.")
    return TwoStageSearch(embedder, reranker)


def _quiet_libraries() -> None:
    """Model-loading progress bars and notices would bury the demo's own output."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # installed as a client of model servers: nothing to quiet
        return
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
