"""Export the benchmark's models once for the peer engines, under
``~/.cache/qwen3-rag/peer-models`` (``$QWEN3_RAG_PEER_MODELS``):

- ONNX, float32: ``torch.onnx.export(dynamo=True, opset_version=18, external_data=True)`` of
  a wrapper that takes ``input_ids`` and ``attention_mask`` (right padding) and returns, at
  each sequence's last token, the hidden state (embedding) or the ``[no, yes]`` logits
  (reranker: the two rows of lm_head);
- ONNX int8: ``onnxruntime.quantization.quantize_dynamic`` with its defaults (QInt8 weights,
  one scale per tensor);
- OpenVINO IR from that ONNX (``compress_to_fp16=False``), and NNCF's
  ``compress_weights`` (int8 weights, asymmetric, one scale per channel);
- GGUF f32 and q8_0 with llama.cpp's own ``convert_hf_to_gguf.py``, from the llama.cpp
  sources of the installed llama-cpp-python (downloaded once with pip, as its sdist).

    python -m benchmarks.peers.export --shape 0.6b
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints" / "cpu-torch.txt"
ARTEFACTS = ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8", "gguf-f32", "gguf-q8_0")


def peer_models_root() -> Path:
    folder = os.environ.get("QWEN3_RAG_PEER_MODELS")
    if folder:
        return Path(folder).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "qwen3-rag" / "peer-models"


def artefact(model_folder: Path, name: str) -> Path:
    """The file an engine loads: ``{root}/{shape}-v{N}/{embedding|reranker}/{name}/...``."""
    folder = peer_models_root() / model_folder.parent.name / model_folder.name / name
    if name.startswith("onnx"):
        return folder / "model.onnx"
    if name.startswith("openvino"):
        return folder / "model.xml"
    return folder / f"model-{name.removeprefix('gguf-')}.gguf"


def _once(target: Path, make: Callable[[Path], None]) -> None:
    """Make ``target``'s folder with ``make`` unless complete; a half-made folder is redone."""
    done = target.parent / "complete"
    if done.exists():
        return
    if target.parent.exists():
        shutil.rmtree(target.parent)
    target.parent.mkdir(parents=True)
    began = time.perf_counter()
    make(target)
    done.write_text("1")
    print(f"  made {target} in {time.perf_counter() - began:.0f} s", flush=True)


# ---------------------------------------------------------------- ONNX


def _wrapper(kind: str, model_folder: Path) -> Any:
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    class LastToken(torch.nn.Module):
        """Hidden state (or the [no, yes] logits) at each sequence's last real token."""

        def __init__(self, body: Any, head: torch.Tensor | None) -> None:
            super().__init__()
            self.body = body
            self.head = None if head is None else torch.nn.Parameter(head, requires_grad=False)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.body(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
            last = attention_mask.sum(dim=1) - 1
            pooled = hidden[torch.arange(hidden.shape[0]), last]
            return pooled if self.head is None else pooled @ self.head.T

    if kind == "embedding":
        body = AutoModel.from_pretrained(model_folder, dtype=torch.float32)
        return LastToken(body.eval(), None).eval()
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    rows = [tokenizer.convert_tokens_to_ids(t) for t in ("no", "yes")]
    head = model.lm_head.weight.detach()[rows].clone()
    return LastToken(model.model, head).eval()


def export_onnx(kind: str, model_folder: Path, target: Path) -> None:
    import torch

    module = _wrapper(kind, model_folder)
    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.no_grad():
        torch.onnx.export(
            module,
            (ids, mask),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["output"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            dynamo=True,
            opset_version=18,
            external_data=True,
        )


def quantize_onnx(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=QuantType.QInt8, use_external_data_format=True)


# ---------------------------------------------------------------- OpenVINO


def convert_openvino(source: Path, target: Path, int8: bool) -> None:
    import openvino as ov

    model = ov.convert_model(str(source))
    if int8:
        import nncf

        model = nncf.compress_weights(model)  # INT8_ASYM, per output channel
    ov.save_model(model, str(target), compress_to_fp16=False)


# ---------------------------------------------------------------- GGUF


def llama_cpp_sources() -> Path:
    """llama.cpp's converter, from the sdist of the installed llama-cpp-python version."""
    version = importlib.metadata.version("llama-cpp-python")
    folder = peer_models_root() / f"llama-cpp-python-{version}"
    converter = folder / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    if converter.exists():
        return converter
    download = peer_models_root() / "sdist"
    download.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "-c", str(CONSTRAINTS), "-d", str(download), f"llama-cpp-python=={version}"],
        check=True,
    )  # fmt: skip
    with tarfile.open(next(download.glob(f"llama_cpp_python-{version}.tar.gz"))) as archive:
        wanted = [
            m
            for m in archive.getmembers()
            if "/vendor/llama.cpp/" in m.name
            and any(
                part in m.name
                for part in ("convert_hf_to_gguf.py", "/conversion/", "/gguf-py/", "/models/")
            )
        ]
        archive.extractall(peer_models_root(), members=wanted, filter="data")
    extracted = peer_models_root() / f"llama_cpp_python-{version}"
    extracted.rename(folder)
    return converter


def convert_gguf(kind: str, model_folder: Path, target: Path, outtype: str) -> None:
    source = model_folder
    if kind == "reranker":
        # The converter makes a Qwen3-Reranker (a [yes, no] classifier head, RANK pooling)
        # when the folder's name says so.
        source = target.parent / "qwen3-reranker"
        source.mkdir()
        for file in model_folder.iterdir():
            (source / file.name).symlink_to(file)
    subprocess.run(
        [sys.executable, str(llama_cpp_sources()), str(source), "--outtype", outtype,
         "--outfile", str(target)],
        check=True,
    )  # fmt: skip
    if source != model_folder:
        shutil.rmtree(source)


def export_all(model_folder: Path, kind: str, names: tuple[str, ...] = ARTEFACTS) -> None:
    """Make every artefact in ``names`` that is not yet in the cache."""
    onnx_fp32 = artefact(model_folder, "onnx-fp32")
    steps: dict[str, Callable[[Path], None]] = {
        "onnx-fp32": lambda t: export_onnx(kind, model_folder, t),
        "onnx-int8": lambda t: quantize_onnx(onnx_fp32, t),
        "openvino-fp32": lambda t: convert_openvino(onnx_fp32, t, int8=False),
        "openvino-int8": lambda t: convert_openvino(onnx_fp32, t, int8=True),
        "gguf-f32": lambda t: convert_gguf(kind, model_folder, t, "f32"),
        "gguf-q8_0": lambda t: convert_gguf(kind, model_folder, t, "q8_0"),
    }
    needed = set(names)
    if needed & {"onnx-int8", "openvino-fp32", "openvino-int8"}:
        needed.add("onnx-fp32")
    for name in ARTEFACTS:
        if name in needed:
            _once(artefact(model_folder, name), steps[name])


def main() -> None:
    parser = argparse.ArgumentParser(description="Export the benchmark models for peer engines")
    parser.add_argument("--shape", default="small")
    parser.add_argument("--only", nargs="*", default=list(ARTEFACTS), choices=ARTEFACTS)
    args = parser.parse_args()
    from qwen3_core.testing import build_test_models

    folders = build_test_models(shape=args.shape)
    for kind, folder in (("embedding", folders.embedding), ("reranker", folders.reranker)):
        export_all(Path(folder), kind, tuple(args.only))


if __name__ == "__main__":
    main()
