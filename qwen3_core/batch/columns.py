"""Internal: reading text columns out of an Arrow batch and writing result columns into it.

A worker sees one batch, never its offset in the dataset (Ray Data does not pass it), so a
bad row is named by its column, its value and the row's other values, which is what a user
can search for; a position inside the batch alone would point nowhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_VALUE_CHARS = 80  # per column when a row is shown in an error
_ROW_CHARS = 400


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def describe_row(batch: Any, index: int) -> str:
    """Row ``index`` of the Arrow table ``batch`` as ``{'col': value, ...}``, each value and
    the whole cut short so huge rows (or earlier embedding columns) keep errors readable.

    Args:
        batch: A ``pyarrow.Table`` (one batch of the dataset).
        index: The row's position in ``batch``.

    Returns:
        The row as text, at most 400 characters.
    """
    row = batch.slice(index, 1).to_pylist()[0]
    text = "{" + ", ".join(f"{name!r}: {_short(value)}" for name, value in row.items()) + "}"
    return text if len(text) <= _ROW_CHARS else text[: _ROW_CHARS - 3] + "...}"


def require_column(batch: Any, column: str) -> None:
    """Fail unless ``batch`` has ``column``, listing the columns it has.

    Args:
        batch: A ``pyarrow.Table`` (one batch of the dataset).
        column: The column name that must be present.

    Raises:
        ValueError: ``batch`` has no column ``column``.
    """
    if column not in batch.column_names:
        raise ValueError(
            f"column {column!r} is not in the dataset (its columns: "
            f"{', '.join(map(repr, batch.column_names))})"
        )


def require_absent(batch: Any, column: str) -> None:
    """The result column must be new: overwriting an input column would lose data.

    Args:
        batch: A ``pyarrow.Table`` (one batch of the dataset).
        column: The result column about to be added.

    Raises:
        ValueError: ``batch`` already has a column ``column``.
    """
    if column in batch.column_names:
        raise ValueError(
            f"the dataset already has a column {column!r}: choose another output_column"
        )


def text_values(batch: Any, column: str) -> list[str]:
    """The values of ``column`` as str; any other value (None included) fails the job with a
    TypeError that names the column, the value and the row.

    Args:
        batch: A ``pyarrow.Table`` (one batch of the dataset).
        column: The column of texts.

    Returns:
        The column's values, in row order.

    Raises:
        ValueError: ``batch`` has no column ``column``.
        TypeError: A value in the column is not a str.
    """
    require_column(batch, column)
    values: list[Any] = batch.column(column).to_pylist()
    for index, value in enumerate(values):
        if not isinstance(value, str):
            got = "None" if value is None else f"{type(value).__name__} {_short(value)}"
            raise TypeError(
                f"column {column!r} must hold a str in every row, got {got} in the row "
                f"{describe_row(batch, index)} (row {index} of a batch of {len(values)}; Ray "
                "Data does not tell a batch's place in the dataset, so the row is shown by "
                "its values)"
            )
    return values


def with_vectors(batch: Any, column: str, vectors: np.ndarray) -> Any:
    """``batch`` plus ``column``: fixed_size_list<float32>[dimension], the plain Arrow type for
    vectors, which Parquet readers and vector stores take without Ray's tensor extension.

    Args:
        batch: A ``pyarrow.Table`` (one batch of the dataset).
        column: The name of the new column.
        vectors: One row per row of ``batch``, shape ``(rows, dimension)``.

    Returns:
        A new ``pyarrow.Table``: ``batch``'s columns, then ``column``.
    """
    import pyarrow as pa

    dimension = vectors.shape[1]
    values = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return batch.append_column(column, pa.FixedSizeListArray.from_arrays(values, dimension))


def with_scores(batch: Any, column: str, scores: np.ndarray) -> Any:
    """``batch`` plus ``column``: float32 scores.

    Args:
        batch: A ``pyarrow.Table`` (one batch of the dataset).
        column: The name of the new column.
        scores: One score per row of ``batch``.

    Returns:
        A new ``pyarrow.Table``: ``batch``'s columns, then ``column``.
    """
    import pyarrow as pa

    return batch.append_column(column, pa.array(np.asarray(scores, dtype=np.float32)))
