"""Qwen3-VL embedding and reranking throughput: qwen3-rag's Qwen3VLEmbedder and
Qwen3VLReranker next to the official repository's method (QwenLM/Qwen3-VL-Embedding,
``src/models/qwen3_vl_embedding.py`` and ``qwen3_vl_reranker.py``, written out below) and
sentence-transformers, on random models of the exact Qwen3-VL-2B shape (float32 on CPU):

    python -m benchmarks.bench_multimodal              # 8 images of 448 x 448, 8 texts
    python -m benchmarks.bench_multimodal --shape tiny # a quick check of the script

Workloads: embedding the images, embedding the texts (100 to 200 tokens), and reranking the
images and the texts against one text query. Each method runs in a process of its own that
holds one model at a time. Per workload: the seconds, images (or texts) per second, prompt
tokens per second, the seconds spent preparing the inputs (image decoding, resizing and
patching, tokenizing) and the process's peak memory during the workload.

The official code's method, without torchvision (which ``AutoProcessor`` and
``qwen_vl_utils`` need, and which has no CPU build for this torch): the chat template from the
tokenizer, each image opened, made RGB (RGBA pasted on white), resized to the official pixel
bounds (4 to 1,800 tokens of 32 x 32 pixels) and patched by ``Qwen2VLImageProcessorPil``;
``Qwen3VLModel``'s full forward. The embedder embeds the whole list in one right-padded
batch and pools the last non-pad token (``process``); the reranker scores one pair per
forward pass (``process``'s loop), sigmoid of the last hidden state times the lm_head's
"yes" row minus its "no" row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import make_texts

QUERY = "revenue chart for 2024"
RERANK_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
RERANK_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
EMBED_SYSTEM = "Represent the user's input."
IMAGE_PAD_ID = 151655
WORKLOADS = ("embed images", "embed texts", "rerank images", "rerank texts")


# ---------------------------------------------------------------- the official method


def _official_image(path: str) -> Any:
    """qwen_vl_utils' fetch_image with the official bounds: RGB (RGBA on white), then
    smart_resize to multiples of 32 within 4 and 1,800 tokens (round half to even)."""
    from PIL import Image

    image = Image.open(path)
    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        image = white
    else:
        image = image.convert("RGB")
    factor, low, high = 32, 4 * 32 * 32, 1800 * 32 * 32
    width, height = image.size
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > high:
        beta = math.sqrt(height * width / high)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < low:
        beta = math.sqrt(low / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return image.resize((w_bar, h_bar))


def _content(value: str | Path, prefix: str | None = None) -> list[dict[str, Any]]:
    """format_mm_content / format_model_input: [prefix], the image, or the text."""
    content = [] if prefix is None else [{"type": "text", "text": prefix}]
    if isinstance(value, Path):
        return [*content, {"type": "image", "image": str(value)}]
    return [*content, {"type": "text", "text": value}]


class Official:
    """The official classes' preprocessing and forward passes, for one loaded checkpoint."""

    def __init__(self, folder: str, padding_side: str) -> None:
        from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )

        self.tokenizer = AutoTokenizer.from_pretrained(folder, padding_side=padding_side)
        self.processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
        full = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
        self.model = full.model.eval()
        vocab = self.tokenizer.get_vocab()
        head = full.lm_head.weight.detach()
        self.direction = (head[vocab["yes"]] - head[vocab["no"]]).clone()
        self.preprocess_seconds = 0.0

    def inputs(self, conversations: list[list[dict[str, Any]]]) -> dict[str, Any]:
        """_preprocess_inputs / tokenize: the template, the images, the tokens, padded."""
        start = time.perf_counter()
        texts = [
            self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
            for c in conversations
        ]
        images = [
            _official_image(part["image"])
            for conversation in conversations
            for message in conversation
            for part in message["content"]
            if part["type"] == "image"
        ]
        kwargs: dict[str, Any] = {}
        if images:
            kwargs = dict(self.processor(images=images, do_resize=False, return_tensors="pt"))
            counts = iter(int(g.prod()) // 4 for g in kwargs["image_grid_thw"])
            expanded = []
            for text in texts:
                parts = text.split("<|image_pad|>")
                expanded.append(
                    parts[0] + "".join("<|image_pad|>" * next(counts) + p for p in parts[1:])
                )
            texts = expanded
        batch = dict(self.tokenizer(texts, padding=True, return_tensors="pt"))
        if images:
            batch["mm_token_type_ids"] = (batch["input_ids"] == IMAGE_PAD_ID).int()
        self.preprocess_seconds += time.perf_counter() - start
        return {**batch, **kwargs}

    @staticmethod
    def embedding_conversation(value: str | Path) -> list[dict[str, Any]]:
        """format_model_input: the instruction as the system message, then the input."""
        return [
            {"role": "system", "content": [{"type": "text", "text": EMBED_SYSTEM}]},
            {"role": "user", "content": _content(value)},
        ]

    @staticmethod
    def rerank_conversation(query: str, document: str | Path) -> list[dict[str, Any]]:
        """format_mm_instruction: the judging system message; instruct, query, document."""
        content = [{"type": "text", "text": "<Instruct>: " + RERANK_INSTRUCTION}]
        content += _content(query, "<Query>:") + _content(document, "\n<Document>:")
        return [
            {"role": "system", "content": [{"type": "text", "text": RERANK_SYSTEM}]},
            {"role": "user", "content": content},
        ]

    @torch.no_grad()
    def embed(self, values: list[str | Path]) -> np.ndarray:
        """Qwen3VLEmbedder.process: every input in one batch, last non-pad token, L2."""
        batch = self.inputs([self.embedding_conversation(v) for v in values])
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        last = mask.shape[1] - mask.flip(dims=[1]).argmax(dim=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0]), last]
        return torch.nn.functional.normalize(pooled, p=2, dim=-1).numpy()

    @torch.no_grad()
    def rerank(self, query: str, documents: list[str | Path]) -> list[float]:
        """Qwen3VLReranker.process: one (query, document) pair per forward pass."""
        scores = []
        for document in documents:
            pair = self.rerank_conversation(query, document)
            state = self.model(**self.inputs([pair])).last_hidden_state[:, -1]
            scores += torch.sigmoid(state @ self.direction).tolist()
        return scores


# ---------------------------------------------------------------- methods (one process each)


def _workloads(images: list[str], texts: list[str]) -> dict[str, list[str | Path]]:
    paths: list[str | Path] = [Path(p) for p in images]
    return {"images": paths, "texts": list(texts)}


def run_qwen3_rag(kind: str, folder: str, images: list[str], texts: list[str]) -> Any:
    from qwen3_core import Qwen3VLEmbedder, Qwen3VLReranker, TransformersOptions

    options = TransformersOptions(device="cpu", show_progress=False)
    data = _workloads(images, texts)
    if kind == "embed":
        embedder = Qwen3VLEmbedder(folder, backend=options)
        return {
            name: (
                lambda v=values: embedder.embed_documents(v),
                lambda v=values: sum(len(ids) for ids in embedder.tokenize(v)),
            )
            for name, values in data.items()
        }
    reranker = Qwen3VLReranker(folder, backend=options)
    return {
        name: (
            lambda v=values: reranker.score(QUERY, v),
            lambda v=values: sum(len(ids) for ids in reranker.tokenize(QUERY, v)),
        )
        for name, values in data.items()
    }


def run_official(kind: str, folder: str, images: list[str], texts: list[str]) -> Any:
    official = Official(folder, "right" if kind == "embed" else "left")
    data = _workloads(images, texts)

    def preprocessing(values: list[str | Path]) -> Callable[[], int]:
        """The inputs' preparation alone; returns their tokens (padding left out)."""

        def run() -> int:
            if kind == "embed":
                batch = official.inputs([official.embedding_conversation(v) for v in values])
                return int(batch["attention_mask"].sum())
            return sum(
                int(
                    official.inputs([official.rerank_conversation(QUERY, v)])[
                        "attention_mask"
                    ].sum()
                )
                for v in values
            )

        return run

    if kind == "embed":
        return {
            name: (lambda v=values: official.embed(v), preprocessing(values))
            for name, values in data.items()
        }
    return {
        name: (lambda v=values: official.rerank(QUERY, v), preprocessing(values))
        for name, values in data.items()
    }


def run_sentence_transformers(kind: str, folder: str, images: list[str], texts: list[str]) -> Any:
    from sentence_transformers import CrossEncoder, SentenceTransformer

    data = _workloads(images, texts)
    if kind == "embed":
        model = SentenceTransformer(folder, device="cpu")
        return {
            name: (lambda v=values: model.encode([{"image": str(x)} for x in v]), lambda: 0)
            for name, values in data.items()
        }
    cross = CrossEncoder(folder, device="cpu")
    return {
        name: (lambda v=values: cross.predict([(QUERY, str(x)) for x in v]), lambda: 0)
        for name, values in data.items()
    }


METHODS: dict[str, Callable[..., Any]] = {
    "qwen3-rag": run_qwen3_rag,
    "official loop": run_official,
    "sentence-transformers": run_sentence_transformers,
}


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """The peak resident set is counted from here (Linux: clear_refs 5 resets VmHWM)."""
    with contextlib.suppress(OSError):  # the peak then includes loading
        Path("/proc/self/clear_refs").write_text("5")


def _worker(method: str, kind: str, folder: str, images: list[str], texts: list[str], out: Any):
    try:
        from qwen3_core.loading.transformers_model import quiet_transformers

        start = time.perf_counter()
        with quiet_transformers():
            work = METHODS[method](kind, folder, images, texts)
        results: dict[str, Any] = {
            "load_seconds": time.perf_counter() - start,
            "model_mib": _rss_mib(),
        }
        for name, (run, preprocess) in work.items():
            # Untimed first: one-time costs (allocations, kernel choice) are not throughput.
            run()
            began = time.perf_counter()
            tokens = preprocess()
            preprocessing = time.perf_counter() - began
            _reset_peak()
            began = time.perf_counter()
            run()
            results[name] = {
                "seconds": time.perf_counter() - began,
                "preprocessing": preprocessing,
                "tokens": tokens,
                "peak_mib": _peak_mib(),
            }
        out.put(json.dumps(results))
    except Exception as exc:  # a row that says why, not a crash of the benchmark
        # The first sentence says it (some libraries' messages run over many lines).
        message = f"{type(exc).__name__}: {exc}".splitlines()[0].split(". ")[0]
        out.put(json.dumps({"error": message[:160]}))


def _measure(method: str, kind: str, folder: str, images: list[str], texts: list[str]) -> Any:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=_worker, args=(method, kind, folder, images, texts, out))
    process.start()
    try:
        result = json.loads(out.get(timeout=3600))
    finally:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
    status = result.get("error") or (
        f"loaded in {result['load_seconds']:.1f} s, {result['model_mib']:,.0f} MiB resident"
    )
    print(f"  {kind}, {method}: {status}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="2b", choices=["tiny", "2b"])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--texts", type=int, default=8)
    parser.add_argument("--side", type=int, default=448, help="image width and height")
    parser.add_argument("--only", nargs="*", choices=list(METHODS), help="run only these")
    args = parser.parse_args()

    from PIL import Image
    from transformers import AutoTokenizer

    from qwen3_core.testing import build_vl_test_models

    models = build_vl_test_models(shape=args.shape)
    tokenizer = AutoTokenizer.from_pretrained(models.embedding)
    texts = make_texts(tokenizer, args.texts, 100, 200, seed=7)
    folder = Path(tempfile.mkdtemp(prefix="bench-multimodal-"))
    images = []
    rng = np.random.default_rng(3)
    for i in range(args.images):
        path = folder / f"page-{i}.png"
        pixels = rng.integers(0, 256, (args.side, args.side, 3), np.uint8)
        Image.fromarray(pixels).save(path)
        images.append(str(path))

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    print(
        f"Qwen3-VL, {args.shape} shape, float32, CPU ({cpu}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads); {args.images} images of {args.side} x "
        f"{args.side}, {args.texts} texts of 100-200 tokens; load {os.getloadavg()[0]:.2f}"
    )
    methods = [m for m in METHODS if not args.only or m in args.only]
    for kind in ("embed", "rerank"):
        path = str(models.embedding if kind == "embed" else models.reranker)
        results = {method: _measure(method, kind, path, images, texts) for method in methods}
        _table(kind, results, {"images": args.images, "texts": args.texts})


def _table(kind: str, results: dict[str, Any], items: dict[str, int]) -> None:
    print(f"\n{'Embedding' if kind == 'embed' else 'Reranking (1 text query)'}")
    print(
        "| workload | method | s | items/s | tokens/s | preprocessing s | peak MiB | "
        "x official loop |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for what in ("images", "texts"):
        official = results.get("official loop", {}).get(what)
        counted = {
            m: r[what]["tokens"] for m, r in results.items() if r.get(what, {}).get("tokens")
        }
        if len(set(counted.values())) > 1:
            print(f"(the methods built prompts of different lengths for {what}: {counted})")
        for method, result in results.items():
            label = f"{kind} {what}"
            if "error" in result:
                print(f"| {label} | {method} | - | - | - | - | - | cannot run: {result['error']} |")
                continue
            row = result[what]
            seconds = row["seconds"]
            # Each method counts the prompt tokens it built (the same prompts: checked).
            tokens = next(r[what]["tokens"] for r in results.values() if "error" not in r)
            ratio = f"{official['seconds'] / seconds:.2f}" if official else "-"
            print(
                f"| {label} | {method} | {seconds:.2f} | {items[what] / seconds:.2f} | "
                f"{tokens / seconds:,.0f} | {row['preprocessing']:.2f} | "
                f"{row['peak_mib']:,.0f} | {ratio} |"
            )


if __name__ == "__main__":
    main()
