"""ONNX Runtime's CPU provider on the exported graph (float32, or ``quantize_dynamic`` int8)."""

from __future__ import annotations

from typing import Any

from benchmarks.peers.batching import Batched


def load(spec: dict[str, Any]) -> Batched:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = spec["threads"]
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(spec["artefact"], options, providers=["CPUExecutionProvider"])

    def infer(ids: Any, mask: Any) -> Any:
        return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    return Batched(spec, infer)
