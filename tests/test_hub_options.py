"""Where models come from: hub ids resolved through the real huggingface_hub and modelscope
packages from caches laid out the way each writes them (no network here), with
``revision``, ``cache_dir`` and ``local_files_only`` honoured; ``model_kwargs`` passed to
``from_pretrained``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from qwen3_core import (
    ModelNotFoundError,
    Qwen3Embedder,
    Qwen3Reranker,
    ServerOptions,
    TransformersOptions,
)
from qwen3_core.decoder import Qwen3Decoder
from qwen3_core.hub import HubOptions, resolve_model_folder
from qwen3_core.testing import ModelPaths, VariantPaths
from tests.faulty_models import link_or_copy
from tests.options import CPU

REPO_ID = "Qwen/Qwen3-Reranker-0.6B"


def _lay_hf_snapshot(cache: Path, repo_id: str, commit: str, source: Path, *refs: str) -> Path:
    """A snapshot as huggingface_hub keeps it: models--org--name/snapshots/<commit>/ with
    refs/<name> files holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot, copy_function=link_or_copy)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hf_cache(tmp_path: Path, test_models: ModelPaths, test_variants: VariantPaths) -> Path:
    cache = tmp_path / "hf"
    _lay_hf_snapshot(cache, REPO_ID, "a" * 40, test_models.reranker, "main")
    _lay_hf_snapshot(cache, REPO_ID, "b" * 40, test_variants.rerankers["seq-cls-1"], "seq-cls")
    return cache


def test_hugging_face_cache_with_revision(
    hf_cache: Path, test_models: ModelPaths, test_variants: VariantPaths, corpus: list[str]
) -> None:
    main = Qwen3Reranker(REPO_ID, backend=CPU, cache_dir=hf_cache, local_files_only=True)
    assert main.model_path.name == "a" * 40
    branch = Qwen3Reranker(
        REPO_ID, backend=CPU, cache_dir=hf_cache, local_files_only=True, revision="seq-cls"
    )
    assert branch.model_path.name == "b" * 40
    assert branch.variant.architecture == "seq_cls"
    # Two revisions of one id are two models, not one cache entry.
    assert branch.loaded_model is not main.loaded_model
    np.testing.assert_allclose(
        branch.score("q", corpus[:4]), main.score("q", corpus[:4]), atol=1e-5
    )


def test_missing_revision_is_one_clear_error(hf_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"at revision 'v9'.*Hugging Face Hub"):
        Qwen3Reranker(REPO_ID, cache_dir=hf_cache, local_files_only=True, revision="v9")


def _lay_modelscope_snapshot(cache: Path, repo_id: str, revision: str, source: Path) -> Path:
    """A snapshot as modelscope keeps it: models/org--name/snapshots/<revision>/."""
    snapshot = cache / "models" / repo_id.replace("/", "--") / "snapshots" / revision
    shutil.copytree(source, snapshot, copy_function=link_or_copy)
    return snapshot


def test_modelscope_cache(
    tmp_path: Path, test_models: ModelPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("modelscope")
    cache = tmp_path / "ms"
    snapshot = _lay_modelscope_snapshot(
        cache, "Qwen/Qwen3-Embedding-0.6B", "master", test_models.embedding
    )
    hub = HubOptions(cache_dir=cache, local_files_only=True, source="modelscope")
    assert resolve_model_folder("Qwen/Qwen3-Embedding-0.6B", hub) == snapshot
    engine = Qwen3Embedder(
        "Qwen/Qwen3-Embedding-0.6B",
        backend=CPU,
        source="modelscope",
        cache_dir=cache,
        local_files_only=True,
    )
    assert engine.model_path == snapshot
    local = Qwen3Embedder(test_models.embedding, backend=CPU)
    np.testing.assert_allclose(engine.embed_documents(["x"]), local.embed_documents(["x"]))
    # The switch by environment, as vLLM's VLLM_USE_MODELSCOPE.
    monkeypatch.setenv("QWEN3_RAG_USE_MODELSCOPE", "1")
    assert (
        resolve_model_folder(
            "Qwen/Qwen3-Embedding-0.6B", HubOptions(cache_dir=cache, local_files_only=True)
        )
        == snapshot
    )
    with pytest.raises(ModelNotFoundError, match=r"could not be fetched from ModelScope"):
        resolve_model_folder(
            "Qwen/Nothing-0.6B", HubOptions(cache_dir=cache, local_files_only=True)
        )


def test_bad_hub_options_are_named() -> None:
    with pytest.raises(ValueError, match="unknown source 'github'"):
        Qwen3Embedder("Qwen/Qwen3-Embedding-0.6B", source="github")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="revision must be a non-empty string"):
        Qwen3Embedder("Qwen/Qwen3-Embedding-0.6B", revision="")
    with pytest.raises(TypeError, match="local_files_only must be a bool"):
        Qwen3Embedder("Qwen/Qwen3-Embedding-0.6B", local_files_only="yes")  # type: ignore[arg-type]


def test_bad_modelscope_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWEN3_RAG_USE_MODELSCOPE", "maybe")
    with pytest.raises(ValueError, match="QWEN3_RAG_USE_MODELSCOPE='maybe'"):
        Qwen3Embedder("Qwen/Qwen3-Embedding-0.6B")


def test_model_kwargs_reach_from_pretrained(test_models: ModelPaths, corpus: list[str]) -> None:
    sdpa = Qwen3Embedder(test_models.embedding, backend=CPU)
    eager = Qwen3Embedder(
        test_models.embedding,
        backend=TransformersOptions(device="cpu", model_kwargs={"attn_implementation": "eager"}),
    )
    assert eager.loaded_model.config._attn_implementation == "eager"
    # Without model_kwargs the CPU engine runs qwen3-rag's own decoder, on SDPA.
    assert isinstance(sdpa.loaded_model, Qwen3Decoder)
    np.testing.assert_allclose(
        eager.embed_documents(corpus[:3]), sdpa.embed_documents(corpus[:3]), atol=1e-5
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"torch_dtype": torch.float16}, r"use TransformersOptions\(dtype=\.\.\.\)"),
        ({"device_map": "auto"}, r"use TransformersOptions\(device=\.\.\.\)"),
        ({"revision": "main"}, "use the engine's revision="),
    ],
)
def test_model_kwargs_that_the_engine_owns(
    test_models: ModelPaths, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Qwen3Embedder(
            test_models.embedding, backend=TransformersOptions(device="cpu", model_kwargs=kwargs)
        )


def test_model_kwargs_need_the_transformers_backend(test_models: ModelPaths) -> None:
    """Only TransformersOptions has model_kwargs: for a server it cannot be written."""
    with pytest.raises(TypeError, match="model_kwargs"):
        Qwen3Reranker(
            test_models.reranker,
            backend=ServerOptions(  # type: ignore[call-arg]
                base_url="http://127.0.0.1:9", model_kwargs={"attn_implementation": "eager"}
            ),
        )
