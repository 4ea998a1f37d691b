"""Corpus jobs on Ray Data (qwen3_core.batch): a local two-CPU Ray, the tiny test models.

The jobs must give what the in-process engines give, row for row, with every input column
kept; a bad row fails the job naming its column and showing the row; Ray stays optional.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.testing import ModelPaths
from tests.options import CPU

ray = pytest.importorskip("ray", reason="needs the ray extra")
pa = pytest.importorskip("pyarrow")

from qwen3_core.batch import embed_dataset, rerank_dataset  # noqa: E402
from qwen3_core.batch.columns import text_values  # noqa: E402
from qwen3_core.batch.workers import EmbedWorker, RerankWorker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROWS = 2000
ON_CPU = {"backend": CPU}  # engine_options: the engines' keyword arguments


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 2**20,
        log_to_driver=False,  # workers' logs stay in Ray's session folder
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order, context.enable_progress_bars
    # Ray Data may finish batches out of order; the comparisons below are row for row.
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        ray.shutdown()


@pytest.fixture(scope="module")
def models(test_models: ModelPaths) -> dict[str, str]:
    # Absolute: Ray workers run in another working directory.
    return {
        "embedding": str(Path(test_models.embedding).resolve()),
        "reranker": str(Path(test_models.reranker).resolve()),
    }


def _texts(corpus: list[str]) -> list[str]:
    return [f"{corpus[i % len(corpus)]} #{i}" for i in range(ROWS)]


def _vectors(rows: list[dict[str, Any]], column: str = "embedding") -> np.ndarray:
    return np.asarray([row[column] for row in rows], dtype=np.float32)


def test_embed_dataset_equals_the_engine(
    ray_cluster: None, models: dict[str, str], embedder: Qwen3Embedder, corpus: list[str]
) -> None:
    texts = _texts(corpus)
    items = [
        {"id": i, "text": t, "lang": None if i % 7 else "en", "weight": i / 3}
        for i, t in enumerate(texts)
    ]
    ds = ray.data.from_items(items)
    out = embed_dataset(
        ds, model=models["embedding"], engine_options=ON_CPU, concurrency=2, batch_size=128
    )
    rows = out.take_all()
    assert [{k: r[k] for k in ("id", "text", "lang", "weight")} for r in rows] == items
    assert list(rows[0]) == ["id", "text", "lang", "weight", "embedding"]
    assert out.schema().types[-1] == pa.list_(pa.float32(), embedder.dimension)
    np.testing.assert_allclose(_vectors(rows), embedder.embed_documents(texts), atol=1e-5)


def test_rerank_dataset_equals_the_engine(
    ray_cluster: None,
    models: dict[str, str],
    reranker: Qwen3Reranker,
    corpus: list[str],
    queries: list[str],
) -> None:
    texts = _texts(corpus)
    # Grouped by query, as an evaluation table usually is.
    pairs = [(queries[i * len(queries) // ROWS], t) for i, t in enumerate(texts)]
    items = [{"qid": i // 100, "query": q, "document": d} for i, (q, d) in enumerate(pairs)]
    out = rerank_dataset(
        ray.data.from_items(items),
        model=models["reranker"],
        engine_options=ON_CPU,
        concurrency=2,
        batch_size=200,
    )
    rows = out.take_all()
    assert [{k: r[k] for k in ("qid", "query", "document")} for r in rows] == items
    scores = np.asarray([r["score"] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(scores, reranker.score_pairs(pairs), atol=1e-5)
    assert out.schema().types[-1] == pa.float32()


def test_a_bad_row_fails_the_job_naming_it(ray_cluster: None, models: dict[str, str]) -> None:
    items: list[dict[str, Any]] = [{"doc_id": f"d{i}", "text": f"text {i}"} for i in range(50)]
    items[31]["text"] = None
    out = embed_dataset(
        ray.data.from_items(items), model=models["embedding"], engine_options=ON_CPU
    )
    with pytest.raises(Exception, match="column 'text' must hold a str") as caught:
        out.materialize()
    # Ray wraps the worker's TypeError; its message comes through whole.
    assert "got None in the row {'doc_id': 'd31', 'text': None}" in str(caught.value)


def test_workers_in_process(
    models: dict[str, str],
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    queries: list[str],
    corpus: list[str],
) -> None:
    """The callable classes without Ray: queries with an instruction, an instructed reranker,
    and the errors a worker raises where the driver could not see the schema."""
    worker = EmbedWorker(models["embedding"], ON_CPU, "question", "vector", "query", "Find it")
    out = worker(pa.table({"qid": list(range(len(queries))), "question": queries}))
    assert out.column_names == ["qid", "question", "vector"]
    expected = embedder.embed_queries(queries, "Find it")
    np.testing.assert_allclose(np.asarray(out.column("vector").to_pylist()), expected, atol=1e-5)
    with pytest.raises(ValueError, match="already has a column 'vector'"):
        worker(out)
    with pytest.raises(TypeError, match="got bytes b'q'"):
        worker(pa.table({"question": [b"q"]}))
    assert worker(pa.table({"question": pa.array([], pa.string())})).num_rows == 0

    pairs = [(queries[0], d) for d in corpus]
    scorer = RerankWorker(models["reranker"], ON_CPU, "q", "d", "relevance", "Judge it")
    table = pa.table({"q": [q for q, _ in pairs], "d": [d for _, d in pairs]})
    scores = scorer(table).column("relevance").to_numpy()
    np.testing.assert_allclose(
        scores, reranker.score_pairs(pairs, instruction="Judge it"), atol=1e-5
    )


def test_text_values_names_the_row_without_ray() -> None:
    batch = pa.table({"id": [1, 2, 3], "query": ["a", None, "c"], "document": ["x", "y", "z"]})
    assert text_values(batch, "document") == ["x", "y", "z"]
    with pytest.raises(TypeError) as caught:
        text_values(batch, "query")
    assert "column 'query' must hold a str in every row, got None" in str(caught.value)
    assert "{'id': 2, 'query': None, 'document': 'y'}" in str(caught.value)
    with pytest.raises(ValueError, match="column 'title' is not in the dataset"):
        text_values(batch, "title")
    long = pa.table({"text": [None], "body": ["z" * 10_000]})
    with pytest.raises(TypeError) as caught:
        text_values(long, "text")
    assert len(str(caught.value)) < 800


def test_arguments_are_checked_at_the_driver(ray_cluster: None, models: dict[str, str]) -> None:
    ds = ray.data.from_items([{"text": "a", "embedding": 1}])
    model = models["embedding"]
    with pytest.raises(ValueError, match="already has a column 'embedding'"):
        embed_dataset(ds, model=model)
    with pytest.raises(ValueError, match="text_column='body' is not a column"):
        embed_dataset(ds, model=model, text_column="body", output_column="vector")
    with pytest.raises(TypeError, match=r"'devise'.*Qwen3Embedder does not take"):
        embed_dataset(ds, model=model, output_column="v", engine_options={"devise": "cpu"})
    with pytest.raises(ValueError, match="kind='query' only"):
        embed_dataset(ds, model=model, output_column="v", instruction="x")
    with pytest.raises(ValueError, match="may not set batch_size"):
        embed_dataset(ds, model=model, output_column="v", map_batches_options={"batch_size": 2})
    pairs = ray.data.from_items([{"query": "q", "document": "d"}])
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        rerank_dataset(pairs, model=models["reranker"], concurrency=0)
    with pytest.raises(TypeError, match=r"'share_prefix'.*Qwen3Embedder does not take"):
        embed_dataset(ds, model=model, output_column="v", engine_options={"share_prefix": False})


def test_a_flat_backend_keyword_in_engine_options_is_refused_at_the_driver(
    ray_cluster: None, models: dict[str, str]
) -> None:
    """Backend settings go in ``backend``'s options: a flat ``device`` fails at once, naming
    what the engine takes, before anything runs."""
    pairs = ray.data.from_items([{"query": "q", "document": "d"}])
    with pytest.raises(TypeError, match=r"'device'.*Qwen3Reranker does not take.*backend"):
        rerank_dataset(pairs, model=models["reranker"], engine_options={"device": "cpu"})


# A None entry in sys.modules makes `import ray` raise ImportError, as if not installed.
NO_RAY = textwrap.dedent(
    """
    import json, sys
    sys.modules["ray"] = None
    import qwen3_core.batch
    try:
        qwen3_core.batch.embed_dataset(object(), model="unused")
    except ImportError as exc:
        print(json.dumps({"error": str(exc)}))
    """
)

ISOLATED = textwrap.dedent(
    """
    import json, sys
    import qwen3_core, qwen3_core.batch
    from qwen3_core.batch import embed_dataset, rerank_dataset
    print(json.dumps(sorted(m for m in ("ray", "pyarrow") if m in sys.modules)))
    """
)


def _python(script: str) -> Any:
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_missing_ray_is_an_import_error_naming_the_extra() -> None:
    assert 'pip install -e ".[ray]" in a clone of qwen3-rag' in _python(NO_RAY)["error"]


def test_importing_qwen3_core_does_not_import_ray() -> None:
    assert _python(ISOLATED) == []
