"""Cold start: from a fresh Python process to the first result, for qwen3-rag's engines and
for sentence-transformers loading the same folders (its ``SentenceTransformer`` and its
``CrossEncoder``, which runs Qwen3-Reranker natively).

Each method runs in a new process, ``--repeats`` times after one untimed run that fills the
page cache, so every method reads the weights from memory alike; the table gives medians.

    python -m benchmarks.bench_startup --shape 0.6b
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks.common import REPO, base_arguments, model_folders, selected

# Each script prints one JSON line: seconds spent importing, loading, and on the first call.
_TIMED = """
import json, sys, time
started = time.perf_counter()
{imports}
imported = time.perf_counter()
{load}
loaded = time.perf_counter()
{first}
done = time.perf_counter()
parts = {{"import": imported - started, "load": loaded - imported, "first": done - loaded}}
print(json.dumps(parts))
"""

METHODS: dict[str, tuple[str, str, str, str]] = {
    # name: (model kind, imports, load, first call)
    "qwen3-rag Qwen3Embedder": (
        "embedding",
        "from qwen3_core import Qwen3Embedder, TransformersOptions",
        "engine = Qwen3Embedder(sys.argv[1], backend=TransformersOptions(device=sys.argv[2]))",
        "engine.embed_queries(['What is the capital of China?'])",
    ),
    "qwen3-rag Qwen3Embedder, int8": (
        "embedding",
        "from qwen3_core import Qwen3Embedder, TransformersOptions",
        "engine = Qwen3Embedder(sys.argv[1], backend=TransformersOptions(device=sys.argv[2], "
        "quantization='int8'))",
        "engine.embed_queries(['What is the capital of China?'])",
    ),
    "sentence-transformers SentenceTransformer": (
        "embedding",
        "from sentence_transformers import SentenceTransformer",
        "engine = SentenceTransformer(sys.argv[1], device=sys.argv[2])",
        "engine.encode(['What is the capital of China?'])",
    ),
    "qwen3-rag Qwen3Reranker": (
        "reranker",
        "from qwen3_core import Qwen3Reranker, TransformersOptions",
        "engine = Qwen3Reranker(sys.argv[1], backend=TransformersOptions(device=sys.argv[2]))",
        "engine.score('What is the capital of China?', ['Beijing is the capital of China.'])",
    ),
    "qwen3-rag Qwen3Reranker, int8": (
        "reranker",
        "from qwen3_core import Qwen3Reranker, TransformersOptions",
        "engine = Qwen3Reranker(sys.argv[1], backend=TransformersOptions(device=sys.argv[2], "
        "quantization='int8'))",
        "engine.score('What is the capital of China?', ['Beijing is the capital of China.'])",
    ),
    "sentence-transformers CrossEncoder": (
        "reranker",
        "from sentence_transformers import CrossEncoder",
        "engine = CrossEncoder(sys.argv[1], device=sys.argv[2])",
        "engine.predict([('What is the capital of China?', 'Beijing is the capital of China.')])",
    ),
}
BASELINE = {
    "embedding": "sentence-transformers SentenceTransformer",
    "reranker": "sentence-transformers CrossEncoder",
}


@dataclass
class Start:
    total: float
    imports: float
    load: float
    first: float


def cold_start(script: str, folder: str, device: str) -> Start:
    """One fresh process: its whole wall time, and the parts it reports."""
    began = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", script, folder, device],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    total = time.perf_counter() - began
    if run.returncode != 0:
        raise RuntimeError(f"the method failed:\n{run.stderr[-2000:]}")
    parts = json.loads(run.stdout.strip().splitlines()[-1])
    return Start(total, parts["import"], parts["load"], parts["first"])


def main() -> None:
    parser = base_arguments("Cold start: process start to the first result")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folders = model_folders(args.shape)
    print(f"cold start: shape {args.shape}, device {args.device}, median of {args.repeats}")
    results: dict[str, Start] = {}
    for name, (kind, imports, load, first) in METHODS.items():
        if not selected(name, args):
            continue
        folder = str(folders.embedding if kind == "embedding" else folders.reranker)
        script = _TIMED.format(imports=imports, load=load, first=first)
        cold_start(script, folder, args.device)  # fills the page cache
        runs = [cold_start(script, folder, args.device) for _ in range(args.repeats)]
        results[name] = Start(
            *(statistics.median(getattr(r, part) for r in runs) for part in Start.__annotations__)
        )
    header = (
        f"{'method':<44} {'total s':>8} {'import s':>9} {'load s':>7} {'1st call s':>10} "
        f"{'vs ST':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, start in results.items():
        baseline = results.get(BASELINE[METHODS[name][0]])
        ratio = f"{baseline.total / start.total:.2f}x" if baseline else "-"
        print(
            f"{name:<44} {start.total:>8.2f} {start.imports:>9.2f} {start.load:>7.2f} "
            f"{start.first:>10.3f} {ratio:>6}"
        )
    print("vs ST: sentence-transformers' total over this method's (above 1: this starts faster)")


if __name__ == "__main__":
    main()
