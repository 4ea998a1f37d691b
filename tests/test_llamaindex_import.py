"""``llamaindex_qwen3`` needs only llama-index-core: it imports and works with LangChain
blocked, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from qwen3_core.testing import ModelPaths

SCRIPT = textwrap.dedent(
    """
    import sys

    # None in sys.modules makes any import of these packages raise ImportError.
    sys.modules["langchain_core"] = None
    sys.modules["langchain"] = None

    import llamaindex_qwen3
    from llama_index.core.schema import NodeWithScore, TextNode
    from llamaindex_qwen3 import Qwen3Embedding, Qwen3Rerank
    from qwen3_core import TransformersOptions

    cpu = TransformersOptions(device="cpu")

    # The embedding does real work; the reranker's model logic is the same engine code,
    # so it is only built and called on nothing (loading a second model costs seconds).
    vector = Qwen3Embedding(model=sys.argv[1], backend=cpu).get_query_embedding("what is gravity")
    rerank = Qwen3Rerank(model=sys.argv[2], top_n=1, backend=cpu)
    assert rerank.postprocess_nodes([], query_str="what is gravity") == []
    node = NodeWithScore(node=TextNode(text="Gravity attracts bodies with mass."), score=0.5)
    try:
        rerank.postprocess_nodes([node])
    except ValueError:
        pass
    assert len(vector) > 0 and not rerank.engine_loaded
    loaded = sorted(m for m, v in sys.modules.items() if m.startswith("langchain") and v)
    assert not loaded, loaded
    print("ok", llamaindex_qwen3.__all__)
    """
)


def test_imports_and_runs_without_langchain(test_models: ModelPaths) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(test_models.embedding), str(test_models.reranker)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == (
        "ok ['Qwen3Embedding', 'Qwen3Rerank', 'Qwen3VLEmbedding', 'Qwen3VLRerank']"
    )


def test_without_llama_index_core_the_error_says_what_to_install() -> None:
    script = "import sys; sys.modules['llama_index.core'] = None; import llamaindex_qwen3"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: llamaindex_qwen3 needs llama-index-core, which is not installed: run "
        'pip install -e ".[llamaindex]" in a clone of qwen3-rag'
    )
