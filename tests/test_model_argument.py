"""The model is named ``model`` on every public class (LlamaIndex's embedding also takes its
``model_name`` alias), and an unknown keyword is an error everywhere: a misspelt or foreign
setting never passes silently to load another model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from langchain_qwen3 import Qwen3CrossEncoder, Qwen3Embeddings
from langchain_qwen3 import Qwen3Rerank as LangChainRerank
from llamaindex_qwen3 import Qwen3Embedding
from llamaindex_qwen3 import Qwen3Rerank as LlamaIndexRerank
from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.testing import ModelPaths
from tests.options import CPU


def test_llamaindex_embedding_takes_model(test_models: ModelPaths) -> None:
    folder = str(test_models.embedding)
    assert Qwen3Embedding(model=folder, backend=CPU).model_name == folder
    assert Qwen3Embedding(model_name=folder, backend=CPU).model_name == folder
    assert Qwen3Embedding(model=folder, model_name=folder, backend=CPU).model_name == folder
    built = Qwen3Embedding(model=Path(folder), backend=CPU)
    assert built.engine.model_path == Path(folder)  # the folder given, not the default model
    with pytest.raises(ValueError, match=r"model=.* and model_name=.* differ"):
        Qwen3Embedding(model=folder, model_name="Qwen/Qwen3-Embedding-4B")


@pytest.mark.parametrize(
    ("cls", "error"),
    [
        (Qwen3Embedder, TypeError),
        (Qwen3Reranker, TypeError),
        (Qwen3Embeddings, ValidationError),
        (LangChainRerank, ValidationError),
        (Qwen3CrossEncoder, ValidationError),
        (Qwen3Embedding, TypeError),
        (LlamaIndexRerank, TypeError),
    ],
)
def test_unknown_keyword_is_an_error(cls: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="modle"):
        cls(modle="Qwen/Qwen3-Embedding-0.6B")
