"""llama.cpp through llama-cpp-python on the GGUF that llama.cpp's converter made (f32 or
q8_0 weights; the KV cache stays in llama.cpp's default f16).

Embeddings: ``embedding=True`` with last-token pooling (the GGUF stores none). Reranking:
the converter's Qwen3-Reranker form, RANK pooling over a ``[yes, no]`` head with a softmax,
so the first output is P(yes). Token ids go in through llama-cpp-python's own batch, as its
``Llama.embed`` does after tokenising:

- ``batch1``: one sequence per decode;
- ``packed``: sequences packed into batches of up to 2048 tokens (``Llama.embed``'s way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BATCH_TOKENS = {"batch1": 1024, "packed": 2048}


class _Engine:
    def __init__(self, spec: dict[str, Any]) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.kind, self.mode = spec["kind"], spec["mode"]
        size = BATCH_TOKENS[self.mode]
        pooling = (
            llama_cpp.LLAMA_POOLING_TYPE_LAST
            if self.kind == "embedding"
            else llama_cpp.LLAMA_POOLING_TYPE_RANK
        )
        self.llm = llama_cpp.Llama(
            model_path=spec["artefact"],
            embedding=True,
            pooling_type=pooling,
            n_ctx=size,
            n_batch=size,
            n_ubatch=size,
            n_threads=spec["threads"],
            n_threads_batch=spec["threads"],
            verbose=False,
        )
        self.width = (
            self.llm.n_embd()
            if self.kind == "embedding"
            else llama_cpp.llama_model_n_cls_out(self.llm._model.model)
        )
        self.text = spec["first_text"]

    def first(self) -> Any:
        # Its own tokenizer: the GGUF appends <|endoftext|> for the embedding model; the
        # reranker prompt is used as it is, special tokens parsed.
        ids = self.llm.tokenize(self.text.encode(), add_bos=self.kind == "embedding", special=True)
        return self.run([ids], {}, warmup=True)

    def _decode(self, batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
        llm = self.llm
        llm._batch.reset()
        for seq_id, ids in enumerate(batch):
            llm._batch.add_sequence(list(ids), seq_id, True)
        llm._ctx.kv_cache_clear()
        llm._ctx.decode(llm._batch)
        rows = []
        for seq_id in range(len(batch)):
            pointer = self.lib.llama_get_embeddings_seq(llm._ctx.ctx, seq_id)
            rows.append(np.array(pointer[: self.width], dtype=np.float64))
        return rows

    def run(self, ids: Sequence[Sequence[int]], workload: Any, warmup: bool) -> np.ndarray:
        limit = BATCH_TOKENS[self.mode]
        rows: list[np.ndarray] = []
        batch: list[Sequence[int]] = []
        for sequence in ids:
            if self.mode == "batch1" or (
                batch and sum(len(s) for s in batch) + len(sequence) > limit
            ):
                if batch:
                    rows += self._decode(batch)
                batch = []
            batch.append(sequence)
        rows += self._decode(batch)
        out = np.stack(rows)
        if self.kind == "embedding":
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[:, 0]  # softmax([yes, no])[0]


def load(spec: dict[str, Any]) -> _Engine:
    return _Engine(spec)
