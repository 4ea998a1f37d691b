"""Does vLLM's pooling runner run Qwen3-VL embedding and reranking, and does it agree with
the transformers engine?

On the tiny random Qwen3-VL test models (built offline, real tokenizer and processor config),
this script runs each case through ``Qwen3VLEmbedder`` / ``Qwen3VLReranker`` on transformers
and through ``vllm.LLM(runner="pooling")`` with the same prompt text and the same image, and
prints, per case, whether vLLM ran, the error it stopped at if not, and the largest absolute
difference from the transformers engine (vectors for the embedder, log-odds for the
reranker).

Run it with vLLM installed (on a CPU-only machine, vLLM's CPU build):

    VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 \\
        python benchmarks/probe_vllm_multimodal.py

The prompts are the official ones (``qwen3_core.multimodal.prompts``), written out as text
with one ``<|image_pad|>`` per image, which vLLM's processor expands to the image's tokens.
The image is 256 x 320 pixels: a multiple of 32 within the official pixel bounds, so neither
side resizes it and both see the same pixels.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from qwen3_core import Qwen3VLEmbedder, Qwen3VLReranker, TransformersOptions
from qwen3_core.backends.vllm import raw_classifier_params, reranker_overrides
from qwen3_core.multimodal import prompts
from qwen3_core.multimodal.images import MAX_PIXELS, MIN_PIXELS, RemoteImages, load_image
from qwen3_core.multimodal.inputs import Item, check_input
from qwen3_core.testing.vl_models import build_vl_test_models
from qwen3_core.testing.vllm_vl_server import PIL_STAND_IN as STAND_IN

IMAGE_PAD = "<|image_pad|>"


def noise(height: int, width: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def prompt_text(segments: list[prompts.Segment]) -> str:
    """The prompt as text, each image as one pad token (vLLM expands it)."""
    out: list[str] = []
    for segment in segments:
        if isinstance(segment, prompts.Special):
            out.append(segment.token)
        elif isinstance(segment, prompts.ImageSlot):
            out.append(IMAGE_PAD)
        else:
            out.append(segment)
    return "".join(out)


def images_of(*items: Item) -> list[Image.Image]:
    """Each image as the transformers engine sees it: RGB, resized to the official bounds."""
    return [
        load_image(source, item.label, RemoteImages()) for item in items for source in item.images
    ]


def request(text: str, images: list[Image.Image]) -> dict[str, Any]:
    if not images:
        return {"prompt": text}
    return {"prompt": text, "multi_modal_data": {"image": images}}


def last_lines(exc: BaseException) -> str:
    """Where the error was raised and what it says, and the same for the error behind it."""
    cause = exc.__cause__ or exc.__context__
    behind = f"\n      caused by {last_lines(cause)}" if cause is not None else ""
    return _one(exc) + behind


def _one(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    in_vllm = [f for f in frames if "/vllm/" in f.filename]
    if in_vllm and in_vllm[-1] is not frames[-1]:
        where += f"\n      from {in_vllm[-1].filename}:{in_vllm[-1].lineno} ({in_vllm[-1].name})"
    lines = [
        line.strip()
        for line in str(exc).strip().splitlines()
        if line.strip() and "errors.pydantic.dev" not in line
    ]
    text = " | ".join(lines[-3:])
    text = text if len(text) <= 300 else text[:300] + " ..."
    return f"{type(exc).__name__}: {text}\n      at {where}"


def attempt(label: str, run: Callable[[], float]) -> bool:
    try:
        diff = run()
    except Exception as exc:
        print(f"FAILED  {label}\n      {last_lines(exc)}", flush=True)
        return False
    print(f"RAN     {label}: max |vLLM - transformers| = {diff:.3g}", flush=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument(
        "--pil-stand-in",
        action="store_true",
        help="stand transformers' Pillow image processor in for the torchvision one",
    )
    parser.add_argument(
        "--processor-defaults",
        action="store_true",
        help="leave vLLM's image processor at the checkpoint's pixel bounds",
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="probe-vl-"))
    if args.pil_stand_in:
        (scratch / "site").mkdir()
        (scratch / "site" / "sitecustomize.py").write_text(STAND_IN)
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(scratch / "site"), path]))
        exec(STAND_IN, {})
        print("with the Pillow image processor standing in for the torchvision one")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import vllm
    from vllm import LLM

    print(f"vLLM {vllm.__version__}; models: the tiny Qwen3-VL test models", flush=True)
    # vLLM imports its Qwen3-VL module in a subprocess to inspect the architecture and logs
    # that process's error; importing it here shows the error itself.
    try:
        importlib.import_module("vllm.model_executor.models.qwen3_vl")
        print("RAN     import vllm.model_executor.models.qwen3_vl", flush=True)
    except Exception as exc:
        print(f"FAILED  import vllm.model_executor.models.qwen3_vl\n      {last_lines(exc)}")
    built = build_vl_test_models()
    # vLLM only reads the folders, but the cached models are never handed out directly.
    emb_dir = Path(shutil.copytree(built.embedding, scratch / "embedding"))
    rr_dir = Path(shutil.copytree(built.reranker, scratch / "reranker"))

    image = noise(256, 320, 1)
    inputs: dict[str, Any] = {
        "text": "a page about revenue in 2024",
        "image": image,
        "text+image": {"text": "the chart", "image": image},
        "small image (90 x 130)": noise(90, 130, 2),
        "large image (1400 x 1700)": noise(1400, 1700, 3),
    }
    cpu = TransformersOptions(device="cpu")
    common: dict[str, Any] = {
        "runner": "pooling",
        "dtype": "float32",
        "enforce_eager": True,
        "max_model_len": args.max_model_len,
        "limit_mm_per_prompt": {"image": 2, "video": 0},
    }
    if not args.processor_defaults:
        # The official pixel bounds; the checkpoints' preprocessor_config.json says 65,536 to
        # 16,777,216, which the official code overrides.
        bounds = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
        common["mm_processor_kwargs"] = {"size": bounds}

    # Embedding.
    ref_emb = Qwen3VLEmbedder(emb_dir, backend=cpu)
    task = prompts.embedding_instruction(None)
    llm: Any = None
    try:
        llm = LLM(model=str(emb_dir), **common)
    except Exception as exc:
        print(f"FAILED  embedding model start\n      {last_lines(exc)}", flush=True)
    if llm is not None:
        for name, value in inputs.items():
            item = check_input(value, "input")

            def run(item: Item = item, value: Any = value) -> float:
                text = prompt_text(prompts.embedding_prompt(item, task))
                out = llm.embed([request(text, images_of(item))], use_tqdm=False)
                got = np.asarray(out[0].outputs.embedding, dtype=np.float32)
                want = ref_emb.embed_documents([value])[0]
                return float(np.abs(got - want).max())

            attempt(f"embed {name}", run)
        del llm
        gc.collect()
    ref_emb.close()

    # Reranking: the yes/no lm_head rows folded into a one-output classifier, activation off.
    ref_rr = Qwen3VLReranker(rr_dir, backend=cpu)
    overrides = {
        **reranker_overrides("no", "yes"),
        "architectures": ["Qwen3VLForSequenceClassification"],
    }
    llm = None
    try:
        llm = LLM(model=str(rr_dir), hf_overrides=overrides, **common)
    except Exception as exc:
        print(f"FAILED  reranker start\n      {last_lines(exc)}", flush=True)
    if llm is not None:
        query = check_input("revenue chart for 2024", "query")
        for name, value in inputs.items():
            doc = check_input(value, "document")

            def judge(doc: Item = doc, value: Any = value) -> float:
                text = prompt_text(prompts.rerank_prompt(query, doc, prompts.RERANK_INSTRUCTION))
                out = llm.classify(
                    [request(text, images_of(query, doc))],
                    pooling_params=raw_classifier_params(),
                    use_tqdm=False,
                )
                got = float(np.asarray(out[0].outputs.probs, dtype=np.float32).reshape(-1)[0])
                want = float(ref_rr.logits("revenue chart for 2024", [value])[0])
                return abs(got - want)

            attempt(f"rerank query=text, document={name} (log-odds)", judge)
        del llm
        gc.collect()
    ref_rr.close()
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
