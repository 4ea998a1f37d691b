"""OpenVINO's CPU plugin on the IR converted from the ONNX export (float32, or NNCF int8
weights with float32 compute): ``INFERENCE_NUM_THREADS``, an f32 precision hint (else it
runs bfloat16 where the CPU has AMX or AVX512-BF16), the LATENCY hint."""

from __future__ import annotations

from typing import Any

from benchmarks.peers.batching import Batched


def load(spec: dict[str, Any]) -> Batched:
    import openvino as ov

    compiled = ov.Core().compile_model(
        spec["artefact"],
        "CPU",
        {
            "INFERENCE_NUM_THREADS": spec["threads"],
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def infer(ids: Any, mask: Any) -> Any:
        return request.infer({"input_ids": ids, "attention_mask": mask})[output].copy()

    return Batched(spec, infer)
