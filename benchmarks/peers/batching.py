"""How the peer libraries batch an ONNX model, on token ids (right padding, last-token
pooling through the attention mask, as the exported graphs expect):

- ``batch1``: one sequence per call (qwen3-embed does this for its Qwen3 ONNX models);
- ``padded``: chunks of 256 in input order, each padded to its longest (fastembed's
  default);
- ``sorted``: sorted by length, chunks of 8 padded to their longest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

PAD_ID = 151643  # <|endoftext|>
MODES = ("batch1", "sorted", "padded")
SORTED_BATCH = 8
PADDED_BATCH = 256


def groups(lengths: Sequence[int], mode: str) -> list[list[int]]:
    """The indices of each call's batch."""
    order = list(range(len(lengths)))
    if mode == "batch1":
        return [[i] for i in order]
    if mode == "sorted":
        order.sort(key=lambda i: -lengths[i])
        size = SORTED_BATCH
    elif mode == "padded":
        size = PADDED_BATCH
    else:
        raise ValueError(f"unknown batching mode {mode!r}: one of {MODES}")
    return [order[i : i + size] for i in range(0, len(order), size)]


def pad(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``input_ids`` and ``attention_mask``, right-padded to the longest."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return ids, mask


def run_batched(
    ids: Sequence[Sequence[int]], mode: str, infer: Callable[[np.ndarray, np.ndarray], Any]
) -> np.ndarray:
    """``infer`` over the batches of ``mode``; rows back in input order."""
    rows: list[Any] = [None] * len(ids)
    for group in groups([len(s) for s in ids], mode):
        out = np.asarray(infer(*pad([ids[i] for i in group])))
        for row, i in zip(out, group, strict=True):
            rows[i] = row
    return np.stack(rows)


def finish(kind: str, rows: np.ndarray) -> np.ndarray:
    """Embeddings L2-normalised; reranker ``[no, yes]`` logits to P(yes)."""
    rows = rows.astype(np.float64)
    if kind == "embedding":
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return 1.0 / (1.0 + np.exp(rows[:, 0] - rows[:, 1]))


class Batched:
    """An exported graph run in one batching mode: ``first()`` tokenises its text with the
    model's ``tokenizer.json`` (as the peer libraries do), ``run()`` takes token ids."""

    def __init__(self, spec: dict[str, Any], infer: Callable[..., Any]) -> None:
        from tokenizers import Tokenizer

        self.kind, self.mode, self.infer = spec["kind"], spec["mode"], infer
        self.tokenizer = Tokenizer.from_file(str(spec["model_folder"]) + "/tokenizer.json")
        self.text = spec["first_text"]

    def first(self) -> np.ndarray:
        ids = self.tokenizer.encode(self.text, add_special_tokens=False).ids
        if self.kind == "embedding":
            ids.append(PAD_ID)  # the <|endoftext|> that last-token pooling reads
        return self.run([ids], {}, warmup=True)

    def run(self, ids: Sequence[Sequence[int]], workload: Any, warmup: bool) -> np.ndarray:
        return finish(self.kind, run_batched(ids, self.mode, self.infer))
