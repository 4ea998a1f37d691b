"""Reranking throughput: qwen3-rag (shared query prefix, and whole prompts) against the
model card's loop (full-vocabulary logits, left padding, fixed batches of 16).

Workloads: 1 query x 64 documents of 64 to 512 tokens, and 8 queries x 16 documents, on a
random model of the chosen shape (``--shape 0.6b`` is the exact Qwen3-Reranker-0.6B shape):

    python -m benchmarks.bench_rerank --shape small
    python -m benchmarks.bench_rerank --shape 0.6b
"""

from __future__ import annotations

import json
from typing import Any, Literal

import torch

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
from qwen3_core.tokenization import LiteralTokenizer, RerankTokenizer

MODEL_CARD_BATCH = 16
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def _dtype(device: str) -> torch.dtype:
    return torch.float32 if device == "cpu" else torch.bfloat16


def setup_qwen3_rag(
    path: str,
    pairs: list[tuple[str, str]],
    device: str,
    share_prefix: bool = True,
    quantization: Literal["int8"] | None = None,
    cpu_linear: Literal["onednn", "torch"] | None = None,
) -> Any:
    from qwen3_core import Qwen3Reranker, TransformersOptions

    options = TransformersOptions(
        device=device,
        share_prefix=share_prefix,
        show_progress=False,
        quantization=quantization,
        cpu_linear=cpu_linear,
    )
    reranker = Qwen3Reranker(path, backend=options)
    return _timed(reranker, pairs)


def setup_torch_linear(path: str, pairs: list[tuple[str, str]], device: str) -> Any:
    """qwen3-rag with torch's own nn.Linear (its BLAS) instead of oneDNN's GEMM."""
    return setup_qwen3_rag(path, pairs, device, cpu_linear="torch")


def setup_int8(path: str, pairs: list[tuple[str, str]], device: str) -> Any:
    return setup_qwen3_rag(path, pairs, device, quantization="int8")


def setup_vllm(path: str, pairs: list[tuple[str, str]], device: str, max_length: int = 1024) -> Any:
    """``max_length``: the longest prompt vLLM reserves room for; longer workloads raise it."""
    from qwen3_core import Qwen3Reranker

    return _timed(Qwen3Reranker(path, backend="vllm", max_length=max_length), pairs)


def _timed(reranker: Any, pairs: list[tuple[str, str]]) -> Any:

    def run() -> Any:
        return reranker.score_pairs(pairs)

    run.warmup = lambda: reranker.score_pairs(pairs[:2])  # type: ignore[attr-defined]
    return run


def setup_whole_prompts(path: str, pairs: list[tuple[str, str]], device: str) -> Any:
    return setup_qwen3_rag(path, pairs, device, share_prefix=False)


def setup_model_card_loop(
    path: str, pairs: list[tuple[str, str]], device: str, batch_size: int = MODEL_CARD_BATCH
) -> Any:
    """The model card's loop: format, tokenise with truncation, add prefix/suffix ids,
    left-pad each batch of 16, full logits, [no, yes] at the last position, log_softmax,
    exp. ``batch_size``: fewer where 16 prompts' full-vocabulary logits would not fit."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qwen3_core import prompts

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(device)).to(device).eval()
    prefix = tokenizer.encode(prompts.RERANK_PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(prompts.RERANK_SUFFIX, add_special_tokens=False)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")

    def compute(batch: list[tuple[str, str]]) -> list[float]:
        texts = [f"<Instruct>: {INSTRUCTION}\n<Query>: {q}\n<Document>: {d}" for q, d in batch]
        out = tokenizer(
            texts,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=8192 - len(prefix) - len(suffix),
        )
        out["input_ids"] = [prefix + ids + suffix for ids in out["input_ids"]]
        inputs = tokenizer.pad(out, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            logits = model(**inputs).logits[:, -1, :]
        pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
        return torch.log_softmax(pair, dim=1)[:, 1].exp().tolist()

    def run() -> Any:
        return [
            s for i in range(0, len(pairs), batch_size) for s in compute(pairs[i : i + batch_size])
        ]

    run.warmup = lambda: compute(pairs[:2])  # type: ignore[attr-defined]
    return run


METHODS = {
    "qwen3-rag": "benchmarks.bench_rerank.setup_qwen3_rag",
    # CPU only: the same with torch's nn.Linear, to show what oneDNN's GEMM brings.
    "qwen3-rag, torch linear": "benchmarks.bench_rerank.setup_torch_linear",
    # CPU only: int8 decoder weights on VNNI (not exact; see docs/performance.md).
    "qwen3-rag, int8": "benchmarks.bench_rerank.setup_int8",
    "qwen3-rag, whole prompts": "benchmarks.bench_rerank.setup_whole_prompts",
    "model-card loop": "benchmarks.bench_rerank.setup_model_card_loop",
    # Where vLLM is installed (its CPU build keeps one of the cores for itself).
    "qwen3-rag, vllm backend": "benchmarks.bench_rerank.setup_vllm",
}


def main() -> None:
    args = base_arguments("Reranking throughput").parse_args()
    from transformers import AutoTokenizer

    folders = model_folders(args.shape)
    path = str(folders.reranker)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = json.loads((folders.reranker / "config.json").read_text())
    # Exact prompt lengths from the engine's own tokenizer (no model work).
    prompt_tokens = RerankTokenizer(LiteralTokenizer.from_folder(folders.reranker), 8192)
    print(f"rerank: shape {args.shape}, device {args.device}, {torch.get_num_threads()} threads")
    peaks = matmul_peaks(args.device)
    for n_queries, n_docs in [(1, 64), (8, 16)]:
        n_docs = max(2, int(n_docs * args.scale))
        queries = make_texts(tokenizer, n_queries, 8, 24, seed=10 + n_queries)
        docs = make_texts(tokenizer, n_queries * n_docs, 64, 512, seed=20 + n_queries)
        pairs = [(queries[i // n_docs], d) for i, d in enumerate(docs)]
        encoded = prompt_tokens.encode(pairs, INSTRUCTION).prompts
        lengths = [len(p) for p in encoded]
        rows = [
            measure(
                name, target, args.device, {"path": path, "pairs": pairs, "device": args.device}
            )
            for name, target in METHODS.items()
            if selected(name, args)
        ]
        shared = len(encoded[0].head)
        print_table(
            f"Reranking {n_queries} x {n_docs} (documents of 64-512 tokens; {shared} prompt "
            f"tokens shared per query; {args.shape} shape, {args.device})",
            rows,
            items=len(pairs),
            tokens=sum(lengths),
            flops=sum(sequence_flops(config, n) for n in lengths),
            peaks=peaks,
            baselines=["model-card loop", "qwen3-rag, whole prompts"],
        )


if __name__ == "__main__":
    main()
