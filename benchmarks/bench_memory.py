"""Peak memory and cold start on CPU: qwen3-rag's engines in float32 and int8 against
sentence-transformers loading the same folders (``SentenceTransformer``, and ``CrossEncoder``,
which runs Qwen3-Reranker natively).

Each method runs in a new process: it is imported, loads its model, gives one first result
(one query, or one query-document pair), then runs one batch (16 documents of about 200
tokens; for reranking, one query with them). The process reports its resident set (VmRSS) and
its peak so far (VmHWM) after the load and after the batch, and the wall time from its
launch to its first result. One untimed run per method fills the page cache first, so every
method reads the weights from memory alike; then the methods take turns, ``--repeats``
rounds, so that a change of load on the machine falls on all of them alike. The table gives
medians.

    python -m benchmarks.bench_memory --shape 0.6b
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, fields

from benchmarks.common import REPO, base_arguments, model_folders, selected

_PROCESS = """
import json, sys, time
launched = float(sys.argv[3])
started = time.perf_counter()

def memory():
    found = {{}}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found

folder, texts = sys.argv[1], json.loads(sys.argv[2])
query = "What is the capital of China?"
{imports}
imported = time.perf_counter()
{load}
loaded = time.perf_counter()
after_load = memory()
{first}
first = time.perf_counter()
cold = time.time() - launched
{batch}
after_batch = memory()
print(json.dumps({{
    "cold": cold,
    "import": imported - started,
    "load": loaded - imported,
    "first": first - loaded,
    "load_rss": after_load["VmRSS"],
    "load_peak": after_load["VmHWM"],
    "batch_rss": after_batch["VmRSS"],
    "batch_peak": after_batch["VmHWM"],
}}))
"""

_QWEN3_EMBEDDER = (
    "from qwen3_core import Qwen3Embedder, TransformersOptions",
    "engine = Qwen3Embedder(folder, backend=TransformersOptions(device='cpu'{options}))",
    "engine.embed_queries([query])",
    "engine.embed_documents(texts)",
)
_QWEN3_RERANKER = (
    "from qwen3_core import Qwen3Reranker, TransformersOptions",
    "engine = Qwen3Reranker(folder, backend=TransformersOptions(device='cpu'{options}))",
    "engine.score(query, ['Beijing is the capital of China.'])",
    "engine.score(query, texts)",
)


def _qwen3(script: tuple[str, str, str, str], options: str) -> tuple[str, str, str, str]:
    imports, load, first, batch = script
    return imports, load.format(options=options), first, batch


METHODS: dict[str, tuple[str, tuple[str, str, str, str]]] = {
    # name: (model kind, (imports, load, first call, batch))
    "qwen3-rag Qwen3Embedder float32": ("embedding", _qwen3(_QWEN3_EMBEDDER, "")),
    "qwen3-rag Qwen3Embedder int8": (
        "embedding",
        _qwen3(_QWEN3_EMBEDDER, ", quantization='int8'"),
    ),
    "sentence-transformers SentenceTransformer": (
        "embedding",
        (
            "from sentence_transformers import SentenceTransformer",
            "engine = SentenceTransformer(folder, device='cpu')",
            "engine.encode([query])",
            "engine.encode(texts)",
        ),
    ),
    "qwen3-rag Qwen3Reranker float32": ("reranker", _qwen3(_QWEN3_RERANKER, "")),
    "qwen3-rag Qwen3Reranker int8": ("reranker", _qwen3(_QWEN3_RERANKER, ", quantization='int8'")),
    "sentence-transformers CrossEncoder": (
        "reranker",
        (
            "from sentence_transformers import CrossEncoder",
            "engine = CrossEncoder(folder, device='cpu')",
            "engine.predict([(query, 'Beijing is the capital of China.')])",
            "engine.predict([(query, text) for text in texts])",
        ),
    ),
}
BASELINE = {
    "embedding": "sentence-transformers SentenceTransformer",
    "reranker": "sentence-transformers CrossEncoder",
}


def batch_texts() -> list[str]:
    """16 documents of about 200 tokens: the sample corpus, each repeated."""
    from qwen3_core.demo.corpus import SAMPLE_DOCUMENTS

    return [(SAMPLE_DOCUMENTS[i % len(SAMPLE_DOCUMENTS)] + " ") * 8 for i in range(16)]


@dataclass
class Run:
    cold: float
    imports: float
    load: float
    first: float
    load_rss: float
    load_peak: float
    batch_rss: float
    batch_peak: float


def one_run(script: str, folder: str, texts: list[str]) -> Run:
    """One fresh process: what it reports."""
    run = subprocess.run(
        [sys.executable, "-c", script, folder, json.dumps(texts), repr(time.time())],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"the method failed:\n{run.stderr[-2000:]}")
    got = json.loads(run.stdout.strip().splitlines()[-1])
    got["imports"] = got.pop("import")
    return Run(**got)


def main() -> None:
    parser = base_arguments("Peak memory and cold start on CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.set_defaults(device="cpu")
    args = parser.parse_args()
    if args.device != "cpu":
        parser.error("memory here is the resident set of a CPU process: --device cpu")
    folders = model_folders(args.shape)
    texts = batch_texts()
    print(f"memory and cold start: shape {args.shape}, CPU, median of {args.repeats}")
    scripts: dict[str, tuple[str, str]] = {}
    for name, (kind, (imports, load, first, batch)) in METHODS.items():
        if selected(name, args):
            folder = str(folders.embedding if kind == "embedding" else folders.reranker)
            script = _PROCESS.format(imports=imports, load=load, first=first, batch=batch)
            scripts[name] = (script, folder)
            one_run(script, folder, texts)  # fills the page cache
    runs: dict[str, list[Run]] = {name: [] for name in scripts}
    for round_ in range(args.repeats):
        for name, (script, folder) in scripts.items():
            runs[name].append(one_run(script, folder, texts))
        print(f"  round {round_ + 1} of {args.repeats} done", flush=True)
    results = {
        name: Run(*(statistics.median(getattr(r, f.name) for r in done) for f in fields(Run)))
        for name, done in runs.items()
    }
    mib = 2**20
    print(
        "| method | load RSS MiB | load peak MiB | batch RSS MiB | peak MiB | cold start s "
        "| import s | load s | 1st call s | peak vs ST | cold start vs ST |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, run in results.items():
        baseline = results.get(BASELINE[METHODS[name][0]])
        peak = f"{run.batch_peak / baseline.batch_peak:.2f}x" if baseline else "-"
        cold = f"{baseline.cold / run.cold:.2f}x" if baseline else "-"
        print(
            f"| {name} | {run.load_rss / mib:,.0f} | {run.load_peak / mib:,.0f} | "
            f"{run.batch_rss / mib:,.0f} | {run.batch_peak / mib:,.0f} | {run.cold:.2f} | "
            f"{run.imports:.2f} | {run.load:.2f} | {run.first:.2f} | {peak} | {cold} |"
        )
    print(
        "peak vs ST: this method's peak over sentence-transformers' (below 1: less memory); "
        "cold start vs ST: sentence-transformers' over this method's (above 1: starts faster)"
    )


if __name__ == "__main__":
    main()
