"""Internal: token-budget batching: sort by length, cut batches by padded tokens, restore input
order.

An allocation failure halves the batch and retries instead of failing the call.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger("qwen3_core")

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


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA or CPU allocation failure (torch reports CPU ones as a RuntimeError)."""
    import torch  # only the transformers backend, which has torch, batches on a device

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


class OutOfMemoryBackoff:
    """Runs a batch, halving it on allocation failure; tells the log once per instance."""

    def __init__(self) -> None:
        self.logged = False

    def run(self, batch: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        try:
            return fn(batch)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if len(batch) == 1:
                raise MemoryError(
                    "a single input does not fit in memory even alone: lower max_length"
                ) from exc
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if not self.logged:
            self.logged = True
            logger.warning(
                "out of memory on a batch of %d inputs: halving it and retrying (lower "
                "max_batch_tokens to avoid this)",
                len(batch),
            )
        half = len(batch) // 2
        return np.concatenate([self.run(batch[:half], fn), self.run(batch[half:], fn)])


@contextmanager
def progress_bar(
    total: int, show_progress: bool | None, *, many_batches: bool, description: str
) -> Iterator[tqdm[Any]]:
    """A tqdm bar; by default only for more than one batch, and only on a terminal."""
    show = show_progress if show_progress is not None else many_batches and sys.stderr.isatty()
    with tqdm(total=total, desc=description, unit="text", disable=not show) as bar:
        yield bar


def run_batched(
    lengths: Sequence[int],
    run: Callable[[np.ndarray], np.ndarray],
    out: np.ndarray,
    *,
    max_batch_tokens: int,
    max_batch_size: int,
    backoff: OutOfMemoryBackoff,
    bar: tqdm[Any] | None = None,
) -> np.ndarray:
    """Fill ``out[i]`` for every input i with ``run(batch_indices)``, batch by batch."""
    for batch in token_budget_batches(lengths, max_batch_tokens, max_batch_size):
        out[batch] = backoff.run(batch, run)
        if bar is not None:
            bar.update(len(batch))
    return out
