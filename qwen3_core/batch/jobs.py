"""Internal (import its public names from ``qwen3_core.batch``): ``embed_dataset`` and
``rerank_dataset``: the engines as Ray Data ``map_batches`` stages.

Both return a lazy ``ray.data.Dataset`` (nothing runs until it is written or iterated): every
input column, unchanged, plus one result column. Arguments are checked here, at the driver,
so a typo fails at once rather than inside each worker.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen3_core.batch.optional import import_ray_data
from qwen3_core.batch.workers import EmbedKind, EmbedWorker, RerankWorker
from qwen3_core.defaults import DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL
from qwen3_core.validation import check_int, check_text

if TYPE_CHECKING:
    from ray.data import Dataset

# map_batches arguments that these functions set themselves.
_OWN_MAP_ARGUMENTS = frozenset(
    {"fn", "batch_size", "batch_format", "compute", "concurrency", "num_gpus", "num_cpus"}
    | {"fn_constructor_args", "fn_constructor_kwargs", "fn_args", "fn_kwargs"}
)


def embed_dataset(
    ds: Dataset,
    *,
    model: str | os.PathLike[str] = DEFAULT_EMBEDDING_MODEL,
    text_column: str = "text",
    output_column: str = "embedding",
    kind: EmbedKind = "document",
    instruction: str | None = None,
    engine_options: Mapping[str, Any] | None = None,
    concurrency: int | tuple[int, int] = 1,
    num_gpus_per_worker: float = 0,
    num_cpus_per_worker: float | None = None,
    batch_size: int = 256,
    map_batches_options: Mapping[str, Any] | None = None,
) -> Dataset:
    """``ds`` with ``output_column`` added: the Qwen3 embedding of each row's ``text_column``.

    ``kind="document"`` embeds the text as it is (``Qwen3Embedder.embed_documents``);
    ``kind="query"`` embeds ``Instruct: {instruction}\\nQuery:{text}``
    (``embed_queries``; ``instruction`` defaults to the engine's). The column is Arrow
    ``fixed_size_list<float32>[dimension]``, rows L2-normalised.

    Each of ``concurrency`` workers (an int, or ``(min, max)`` for an autoscaling pool) builds
    ``Qwen3Embedder(model, **engine_options)`` once and embeds batches of ``batch_size`` rows;
    ``engine_options`` chooses the backend (``backend=``), device, dtype and the rest.
    ``num_gpus_per_worker`` and ``num_cpus_per_worker`` are reserved per worker; further
    ``Dataset.map_batches`` arguments (``memory``, ``runtime_env``, ...) go in
    ``map_batches_options``. A row whose text is not a str (None included) fails the job
    with a TypeError naming the column and showing the row.

    Args:
        ds: The input dataset; every column passes through unchanged.
        model: A hub id or a local model folder, as ``Qwen3Embedder`` takes it.
        text_column: The column of texts to embed.
        output_column: The new column for the vectors; it must not exist yet.
        kind: ``"document"`` (the text as it is) or ``"query"`` (with the instruction).
        instruction: The task instruction for ``kind="query"``; None: the engine's default.
        engine_options: Further ``Qwen3Embedder`` keyword arguments (``backend`` with its
            options, ``dimensions``, ``max_length``, ...), except ``model``.
        concurrency: The number of workers, or ``(min, max)`` for an autoscaling pool.
        num_gpus_per_worker: GPUs reserved per worker (fractions share a GPU); 0: none.
        num_cpus_per_worker: CPUs reserved per worker; None: Ray Data's default.
        batch_size: Rows per batch handed to a worker.
        map_batches_options: Further ``Dataset.map_batches`` arguments, except those this
            function sets itself.

    Returns:
        A lazy dataset: the input columns plus ``output_column``. Nothing runs until it is
        written or iterated.

    Raises:
        ImportError: Ray Data is not installed (the ``ray`` extra).
        ValueError: An unknown ``kind``, an ``instruction`` with ``kind="document"`` or
            with a lone surrogate (not valid Unicode), a
            column missing from or already in the dataset's known schema, an
            ``output_column`` equal to ``text_column``, ``concurrency`` or ``batch_size``
            below 1, a negative resource amount, ``model`` given in ``engine_options``, or
            a ``map_batches_options`` key this function sets.
        TypeError: A column name or the instruction that is not a str, ``concurrency`` or
            ``batch_size`` that is not an int, or an ``engine_options`` name that
            ``Qwen3Embedder`` does not take. While the job runs, a row whose text is not a
            str fails it with a TypeError too.
    """
    ray_data = import_ray_data()
    if kind not in ("document", "query"):
        raise ValueError(f"kind must be 'document' or 'query', got {kind!r}")
    if instruction is not None:
        if kind != "query":
            raise ValueError("instruction= applies to kind='query' only (documents have none)")
        check_text("instruction", instruction)
    columns = _check_columns(ds, inputs={"text_column": text_column}, output=output_column)
    from qwen3_core.embedder import Qwen3Embedder

    options = _check_engine_options(engine_options, Qwen3Embedder)
    return _map(
        ray_data,
        ds,
        EmbedWorker,
        {
            "model": _model_reference(model),
            "engine_options": options,
            "text_column": columns["text_column"],
            "output_column": output_column,
            "kind": kind,
            "instruction": instruction,
        },
        concurrency=concurrency,
        num_gpus_per_worker=num_gpus_per_worker,
        num_cpus_per_worker=num_cpus_per_worker,
        batch_size=batch_size,
        map_batches_options=map_batches_options,
    )


def rerank_dataset(
    ds: Dataset,
    *,
    model: str | os.PathLike[str] = DEFAULT_RERANKER_MODEL,
    query_column: str = "query",
    document_column: str = "document",
    output_column: str = "score",
    instruction: str | None = None,
    engine_options: Mapping[str, Any] | None = None,
    concurrency: int | tuple[int, int] = 1,
    num_gpus_per_worker: float = 0,
    num_cpus_per_worker: float | None = None,
    batch_size: int = 256,
    map_batches_options: Mapping[str, Any] | None = None,
) -> Dataset:
    """``ds`` with ``output_column`` added: Qwen3-Reranker's P(yes) (float32, in [0, 1]) for
    each row's (``query_column``, ``document_column``) pair, as
    ``Qwen3Reranker.score_pairs`` gives it (``instruction`` defaults to the engine's).

    Workers, options and bad rows as in ``embed_dataset``; rows of one query that share a
    batch share the query's prefix computation, so a table grouped by query runs faster.

    Args:
        ds: The input dataset; every column passes through unchanged.
        model: A hub id or a local model folder, as ``Qwen3Reranker`` takes it.
        query_column: The column of queries.
        document_column: The column of documents.
        output_column: The new column for the scores; it must not exist yet.
        instruction: The task instruction; None: the engine's default.
        engine_options: Further ``Qwen3Reranker`` keyword arguments (``backend`` with its
            options, ``max_length``, ...), except ``model``.
        concurrency: The number of workers, or ``(min, max)`` for an autoscaling pool.
        num_gpus_per_worker: GPUs reserved per worker (fractions share a GPU); 0: none.
        num_cpus_per_worker: CPUs reserved per worker; None: Ray Data's default.
        batch_size: Rows per batch handed to a worker.
        map_batches_options: Further ``Dataset.map_batches`` arguments, except those this
            function sets itself.

    Returns:
        A lazy dataset: the input columns plus ``output_column`` (float32). Nothing runs
        until it is written or iterated.

    Raises:
        ImportError: Ray Data is not installed (the ``ray`` extra).
        ValueError: An ``instruction`` with a lone surrogate (not valid Unicode), a column
            missing from or already in the dataset's known schema, an
            ``output_column`` equal to an input column, ``concurrency`` or ``batch_size``
            below 1, a negative resource amount, ``model`` given in ``engine_options``, or
            a ``map_batches_options`` key this function sets.
        TypeError: A column name or the instruction that is not a str, ``concurrency`` or
            ``batch_size`` that is not an int, or an ``engine_options`` name that
            ``Qwen3Reranker`` does not take. While the job runs, a row whose query or
            document is not a str fails it with a TypeError too.
    """
    ray_data = import_ray_data()
    if instruction is not None:
        check_text("instruction", instruction)
    columns = _check_columns(
        ds,
        inputs={"query_column": query_column, "document_column": document_column},
        output=output_column,
    )
    from qwen3_core.reranker import Qwen3Reranker

    options = _check_engine_options(engine_options, Qwen3Reranker)
    return _map(
        ray_data,
        ds,
        RerankWorker,
        {
            "model": _model_reference(model),
            "engine_options": options,
            **columns,
            "output_column": output_column,
            "instruction": instruction,
        },
        concurrency=concurrency,
        num_gpus_per_worker=num_gpus_per_worker,
        num_cpus_per_worker=num_cpus_per_worker,
        batch_size=batch_size,
        map_batches_options=map_batches_options,
    )


def _model_reference(model: str | os.PathLike[str]) -> str:
    """A local folder as an absolute path (workers run in another working directory); a hub
    id as it is."""
    path = Path(model)
    return str(path.resolve()) if path.exists() else os.fspath(model)


def _check_columns(ds: Any, *, inputs: Mapping[str, str], output: str) -> dict[str, str]:
    """Column names must be str, the output new. Where the schema is known without running
    anything (e.g. Parquet), missing or clashing columns fail here; otherwise in the workers."""
    named = {name: check_text(name, value) for name, value in inputs.items()}
    check_text("output_column", output)
    if output in named.values():
        raise ValueError(f"output_column={output!r} would overwrite an input column")
    known = ds.columns(fetch_if_missing=False)
    if known is not None:
        for name, column in named.items():
            if column not in known:
                raise ValueError(
                    f"{name}={column!r} is not a column of the dataset (its columns: "
                    f"{', '.join(map(repr, known))})"
                )
        if output in known:
            raise ValueError(
                f"the dataset already has a column {output!r}: choose another output_column"
            )
    return named


def _check_engine_options(
    engine_options: Mapping[str, Any] | None, engine: Callable[..., Any]
) -> dict[str, Any]:
    """Names the engine does not take fail here, once, not in every worker's constructor."""
    options = dict(engine_options or {})
    parameters = inspect.signature(engine).parameters
    accepted = {
        name
        for name, parameter in parameters.items()
        if parameter.kind is not inspect.Parameter.VAR_KEYWORD and name != "model"
    }
    if "model" in options:
        raise ValueError("give the model as model=, not in engine_options")
    name = getattr(engine, "__name__", "the engine")
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"engine_options has {', '.join(map(repr, unknown))}, which {name} does not take "
            f"(it takes: {', '.join(sorted(accepted))})"
        )
    return options


def _map(
    ray_data: Any,
    ds: Dataset,
    worker: type[EmbedWorker | RerankWorker],
    constructor: dict[str, Any],
    *,
    concurrency: int | tuple[int, int],
    num_gpus_per_worker: float,
    num_cpus_per_worker: float | None,
    batch_size: int,
    map_batches_options: Mapping[str, Any] | None,
) -> Dataset:
    check_int("batch_size", batch_size, minimum=1)
    _check_amount("num_gpus_per_worker", num_gpus_per_worker)
    if num_cpus_per_worker is not None:
        _check_amount("num_cpus_per_worker", num_cpus_per_worker)
    extra = dict(map_batches_options or {})
    clashing = sorted(_OWN_MAP_ARGUMENTS & set(extra))
    if clashing:
        raise ValueError(
            f"map_batches_options may not set {', '.join(clashing)}: use this function's "
            "own arguments (concurrency, batch_size, num_gpus_per_worker, num_cpus_per_worker)"
        )
    # Actors, not tasks: a task would load the model again for every batch.
    return ds.map_batches(
        worker,
        fn_constructor_kwargs=constructor,
        batch_format="pyarrow",  # every input column passes through untouched, nulls included
        batch_size=batch_size,
        compute=_actor_pool(ray_data, concurrency),
        num_gpus=num_gpus_per_worker or None,
        num_cpus=num_cpus_per_worker,
        **extra,
    )


def _actor_pool(ray_data: Any, concurrency: int | tuple[int, int]) -> Any:
    if isinstance(concurrency, tuple):
        if len(concurrency) != 2:
            raise ValueError(f"concurrency must be an int or (min, max), got {concurrency!r}")
        low = check_int("concurrency[0]", concurrency[0], minimum=1)
        high = check_int("concurrency[1]", concurrency[1], minimum=low)
        return ray_data.ActorPoolStrategy(min_size=low, max_size=high)
    return ray_data.ActorPoolStrategy(size=check_int("concurrency", concurrency, minimum=1))


def _check_amount(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
