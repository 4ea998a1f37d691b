"""Backend selection and closing, in the main suite (no vLLM needed)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.testing import ModelPaths
from tests.options import CPU, on_cpu


def test_unknown_backend(test_models: ModelPaths) -> None:
    with pytest.raises(
        ValueError, match="unknown backend 'onnx': use one of transformers, openvino, vllm"
    ):
        Qwen3Embedder(test_models.embedding, backend="onnx")  # type: ignore[arg-type]


def test_importing_the_engine_never_imports_vllm() -> None:
    code = "import sys, qwen3_core, qwen3_core.backends; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_backend_without_vllm_names_the_extra(test_models: ModelPaths) -> None:
    with pytest.raises(ImportError, match=re.escape('pip install -e ".[vllm]" in a clone')):
        Qwen3Reranker(test_models.reranker, backend="vllm")


def test_close_and_context_manager(test_models: ModelPaths, corpus: list[str]) -> None:
    with Qwen3Reranker(test_models.reranker, backend=CPU) as reranker:
        assert reranker.score("q", corpus[:2]).shape == (2,)
    with pytest.raises(RuntimeError, match="this Qwen3Reranker is closed"):
        reranker.score("q", corpus[:2])
    reranker.close()  # idempotent
    embedder = Qwen3Embedder(test_models.embedding, backend=CPU)
    embedder.close()
    with pytest.raises(RuntimeError, match="this Qwen3Embedder is closed"):
        embedder.embed_queries(["q"])


def test_adapters_pass_backend_options_to_the_engine(test_models: ModelPaths) -> None:
    from langchain_qwen3 import Qwen3Rerank as LangChainRerank
    from llamaindex_qwen3 import Qwen3Rerank as LlamaIndexRerank

    options = TransformersOptions(device="cpu", share_prefix=False)
    langchain = LangChainRerank(model=str(test_models.reranker), backend=options)
    llamaindex = LlamaIndexRerank(model=str(test_models.reranker), backend=options)
    for engine in (langchain.engine, llamaindex.engine):
        assert engine.options == on_cpu(share_prefix=False)
    with pytest.raises(TypeError, match="no_such_option"):
        TransformersOptions(no_such_option=1)  # type: ignore[call-arg]
