"""qwen3-rag itself (``Qwen3Embedder`` / ``Qwen3Reranker``): the transformers backend in
float32 or with ``quantization="int8"``, or ``backend="openvino"``. It is given the texts,
not the ids: its own tokenizer makes the ids every other engine gets, and its time includes
tokenising them."""

from __future__ import annotations

from typing import Any


class _Engine:
    def __init__(self, spec: dict[str, Any]) -> None:
        # qwen3_core first, as a program that imports qwen3-rag before torch: it chooses how
        # torch's threads wait (the rows that set GOMP_SPINCOUNT keep torch's own wait).
        import qwen3_core  # noqa: F401, I001
        import torch
        from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
        from qwen3_core.backend_options import OpenVINOOptions

        torch.set_num_threads(spec["threads"])
        options: Any = TransformersOptions(
            device="cpu",
            show_progress=False,
            quantization=spec.get("quantization"),
            cpu_threads=spec.get("cpu_threads"),
        )
        if spec.get("backend") == "openvino":
            options = OpenVINOOptions(show_progress=False, cache_folder=spec["cache_folder"])
        self.kind = spec["kind"]
        if self.kind == "embedding":
            self.engine: Any = Qwen3Embedder(spec["model_folder"], backend=options)
        else:
            self.engine = Qwen3Reranker(spec["model_folder"], backend=options)
        self.first_query, self.first_text = spec["first_query"], spec["first_document"]

    def first(self) -> Any:
        if self.kind == "embedding":
            return self.engine.embed_documents([self.first_text])
        return self.engine.score(self.first_query, [self.first_text])

    def run(self, ids: list[list[int]], workload: dict[str, Any], warmup: bool) -> Any:
        documents = workload["documents"][: len(ids)]
        if self.kind == "embedding":
            return self.engine.embed_documents(documents)
        return self.engine.score(workload["query"], documents)

    def check(self, workload: dict[str, Any]) -> dict[str, Any]:
        """Whether the ids every other engine got are the ones this engine's public
        ``tokenize_documents`` / ``tokenize`` give."""
        if self.kind == "embedding":
            ids = self.engine.tokenize_documents(workload["documents"])
        else:
            ids = self.engine.tokenize(workload["query"], workload["documents"])
        same = [list(map(int, a)) for a in ids] == workload["ids"]
        return {"ids_match": same}


def load(spec: dict[str, Any]) -> _Engine:
    return _Engine(spec)
