"""Token-budget batching: sort by length, cut batches by padded tokens, restore input order."""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import numpy as np
from tqdm.auto import tqdm

T = TypeVar("T", bound=Hashable)


def unique_with_inverse(items: Sequence[T]) -> tuple[list[T], np.ndarray]:
    """The distinct items in first-seen order, and for each input its index among them:
    a repeated input is computed once and its copies get exactly the same result."""
    positions: dict[T, int] = {}
    inverse = np.fromiter(
        (positions.setdefault(item, len(positions)) for item in items),
        dtype=np.int64,
        count=len(items),
    )
    return list(positions), inverse


def token_budget_batches(
    lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int
) -> list[np.ndarray]:
    """Index batches, longest first, each holding at most ``max_batch_tokens`` tokens once
    padded to its longest member (a single longer input gets a batch of its own)."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])  # descending: the first is the longest
        size = max(1, min(max_batch_size, max_batch_tokens // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches


def show_progress_default(show_progress: bool | None, n_batches: int) -> bool:
    """By default a bar only for more than one batch, and only on a terminal."""
    if show_progress is not None:
        return show_progress
    return n_batches > 1 and sys.stderr.isatty()


def run_batched(
    lengths: Sequence[int],
    run: Callable[[np.ndarray], np.ndarray],
    out: np.ndarray,
    *,
    max_batch_tokens: int,
    max_batch_size: int,
    show_progress: bool | None,
    description: str,
) -> np.ndarray:
    """Fill ``out[i]`` for every input i with ``run(batch_indices)``, batch by batch."""
    batches = token_budget_batches(lengths, max_batch_tokens, max_batch_size)
    show = show_progress_default(show_progress, len(batches))
    with tqdm(total=len(lengths), desc=description, unit="text", disable=not show) as bar:
        for batch in batches:
            out[batch] = run(batch)
            bar.update(len(batch))
    return out
