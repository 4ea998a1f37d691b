"""Embedding throughput: qwen3-rag against the model card's loop and sentence-transformers.

Workload: 256 documents of 16 to 512 tokens (fixed seed), on a random model of the chosen
shape (``--shape 0.6b`` is the exact Qwen3-Embedding-0.6B shape). Run:

    python -m benchmarks.bench_embed --shape small      # seconds
    python -m benchmarks.bench_embed --shape 0.6b       # minutes on a 2-core CPU
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from benchmarks.common import (
    base_arguments,
    make_texts,
    matmul_peaks,
    measure,
    model_folders,
    print_table,
    selected,
    sequence_flops,
)

# The model card embeds a list at once: here fixed chunks of 32, padded to the longest.
MODEL_CARD_BATCH = 32


def _dtype(device: str) -> torch.dtype:
    return torch.float32 if device == "cpu" else torch.bfloat16


def setup_qwen3_rag(
    path: str,
    texts: list[str],
    device: str,
    backend: str = "transformers",
    quantization: Literal["int8"] | None = None,
    cpu_linear: Literal["onednn", "torch"] | None = None,
) -> Any:
    from qwen3_core import Qwen3Embedder, TransformersOptions

    if backend == "vllm":
        embedder = Qwen3Embedder(path, backend="vllm", max_length=1024)
    else:
        options = TransformersOptions(
            device=device, show_progress=False, quantization=quantization, cpu_linear=cpu_linear
        )
        embedder = Qwen3Embedder(path, backend=options)

    def run() -> Any:
        return embedder.embed_documents(texts)

    run.warmup = lambda: embedder.embed_documents(texts[:4])  # type: ignore[attr-defined]
    return run


def setup_vllm(path: str, texts: list[str], device: str) -> Any:
    return setup_qwen3_rag(path, texts, device, backend="vllm")


def setup_torch_linear(path: str, texts: list[str], device: str) -> Any:
    """qwen3-rag with torch's own nn.Linear (its BLAS) instead of oneDNN's GEMM."""
    return setup_qwen3_rag(path, texts, device, cpu_linear="torch")


def setup_int8(path: str, texts: list[str], device: str) -> Any:
    return setup_qwen3_rag(path, texts, device, quantization="int8")


def setup_model_card_loop(path: str, texts: list[str], device: str) -> Any:
    """The model card's loop: left padding, pad to the longest of each chunk, last-token
    pool, normalise."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModel.from_pretrained(path, dtype=_dtype(device)).to(device).eval()

    def encode(chunk: list[str]) -> torch.Tensor:
        inputs = tokenizer(
            chunk, padding=True, truncation=True, max_length=8192, return_tensors="pt"
        ).to(device)
        with torch.no_grad():
            hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"]
        if bool((mask[:, -1].sum() == mask.shape[0]).item()):  # left padding
            pooled = hidden[:, -1]
        else:
            ends = mask.sum(dim=1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=device), ends]
        return F.normalize(pooled, p=2, dim=1).float().cpu()

    def run() -> Any:
        return torch.cat(
            [
                encode(texts[i : i + MODEL_CARD_BATCH])
                for i in range(0, len(texts), MODEL_CARD_BATCH)
            ]
        )

    run.warmup = lambda: encode(texts[:4])  # type: ignore[attr-defined]
    return run


def setup_sentence_transformers(path: str, texts: list[str], device: str) -> Any:
    """sentence-transformers with last-token pooling: sorts by length, batches of 32."""
    from sentence_transformers import SentenceTransformer, models

    hidden = json.loads((Path(path) / "config.json").read_text())["hidden_size"]
    transformer = models.Transformer(path, max_seq_length=8192)
    pooling = models.Pooling(hidden, pooling_mode="lasttoken")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device=device)
    model.to(_dtype(device))

    def run() -> Any:
        return model.encode(texts, batch_size=MODEL_CARD_BATCH, convert_to_numpy=True)

    run.warmup = lambda: model.encode(texts[:4])  # type: ignore[attr-defined]
    return run


METHODS = {
    "qwen3-rag": "benchmarks.bench_embed.setup_qwen3_rag",
    # CPU only: the same with torch's nn.Linear, to show what oneDNN's GEMM brings.
    "qwen3-rag, torch linear": "benchmarks.bench_embed.setup_torch_linear",
    # CPU only: int8 decoder weights on VNNI (not exact; see docs/performance.md).
    "qwen3-rag, int8": "benchmarks.bench_embed.setup_int8",
    "model-card loop": "benchmarks.bench_embed.setup_model_card_loop",
    "sentence-transformers": "benchmarks.bench_embed.setup_sentence_transformers",
    # Where vLLM is installed (its CPU build keeps one of the cores for itself).
    "qwen3-rag, vllm backend": "benchmarks.bench_embed.setup_vllm",
}


def main() -> None:
    args = base_arguments("Embedding throughput").parse_args()
    from transformers import AutoTokenizer

    folders = model_folders(args.shape)
    path = str(folders.embedding)
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = make_texts(tokenizer, max(4, int(256 * args.scale)), 16, 512, seed=0)
    lengths = [len(tokenizer(t).input_ids) for t in texts]  # with <|endoftext|>
    config = json.loads((folders.embedding / "config.json").read_text())
    flops = sum(sequence_flops(config, n) for n in lengths)
    print(f"embed: shape {args.shape}, device {args.device}, {torch.get_num_threads()} threads")
    peaks = matmul_peaks(args.device)
    rows = [
        measure(name, target, args.device, {"path": path, "texts": texts, "device": args.device})
        for name, target in METHODS.items()
        if selected(name, args)
    ]
    print_table(
        f"Embedding {len(texts)} documents of 16-512 tokens ({args.shape} shape, {args.device})",
        rows,
        items=len(texts),
        tokens=sum(lengths),
        flops=flops,
        peaks=peaks,
        baselines=["model-card loop", "sentence-transformers"],
    )


if __name__ == "__main__":
    main()
