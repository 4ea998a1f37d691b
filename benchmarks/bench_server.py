"""backend="server" against vLLM servers started on this machine, with 1, 4 and 16 concurrent
callers, and the local engine (transformers backend, in-process) measured in the same run.

Workloads, as an app issues them: embed 512 documents of 16 to 256 tokens in calls of 16,
and rerank 16 queries x 32 documents of 16 to 256 tokens, one query per call. N callers share
the calls (threads, each waiting on its own call). Needs vLLM (on CPU its CPU build: run it
from the vLLM virtual environment of ``make test-vllm``):

    .venv-vllm/bin/python -m benchmarks.bench_server                # small shape
    .venv-vllm/bin/python -m benchmarks.bench_server --shape 0.6b --scale 0.25

On a 2-core CPU the server and the client share the cores, so the server cannot beat the
in-process engine here: the numbers show the client's overhead and how callers overlap.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO,
    base_arguments,
    make_texts,
    matmul_peaks,
    measure,
    model_folders,
    print_table,
    sequence_flops,
)

MAX_LENGTH = 512
EMBED_CALL = 16
CALLERS = (1, 4, 16)
MARKERS = ("alpha", "bravo", "charlie", "delta")  # one per row, see ``setup``


def _engine(kind: str, path: str, device: str, base_url: str | None) -> Any:
    from qwen3_core import Qwen3Embedder, Qwen3Reranker, ServerOptions, TransformersOptions

    engine_class = Qwen3Embedder if kind == "embed" else Qwen3Reranker
    if base_url is None:
        options = TransformersOptions(device=device, show_progress=False)
        return engine_class(path, backend=options, max_length=MAX_LENGTH)
    return engine_class(path, backend=ServerOptions(base_url=base_url), max_length=MAX_LENGTH)


def setup(
    kind: str,
    path: str,
    calls: list[Any],
    device: str,
    base_url: str | None,
    callers: int,
    marker: str,
) -> Any:
    """The workload: ``calls`` (embed: lists of texts; rerank: (query, documents)) spread over
    ``callers`` threads. Each text (each query) starts with this row's ``marker`` word, so no
    row finds another's prompts in the server's prefix cache."""
    engine = _engine(kind, path, device, base_url)
    if kind == "embed":
        calls = [[f"{marker} {t}" for t in call] for call in calls]
    else:
        calls = [(f"{marker} {q}", docs) for q, docs in calls]

    def one(call: Any) -> Any:
        return engine.embed_documents(call) if kind == "embed" else engine.score(*call)

    def run() -> Any:
        if callers == 1:
            return [one(c) for c in calls]
        with ThreadPoolExecutor(callers) as pool:
            return list(pool.map(one, calls))

    run.warmup = lambda: one(calls[0])  # type: ignore[attr-defined]
    return run


def main() -> None:
    from transformers import AutoTokenizer

    from qwen3_core.prompts import DEFAULT_INSTRUCTION
    from qwen3_core.testing import VllmServer
    from qwen3_core.tokenization import LiteralTokenizer, RerankTokenizer

    parser = base_arguments("Server backend throughput")
    parser.add_argument("--workload", choices=["embed", "rerank", "both"], default="both")
    args = parser.parse_args()
    folders = model_folders(args.shape)
    scratch = Path(os.environ.get("TMPDIR", REPO / ".vllm-scratch")) / "bench-servers"
    servers = {
        "embed": VllmServer(
            folders.embedding, reranker=False, scratch=scratch, max_model_len=MAX_LENGTH
        ),
        "rerank": VllmServer(
            folders.reranker, reranker=True, scratch=scratch, max_model_len=MAX_LENGTH
        ),
    }
    kinds = ["embed", "rerank"] if args.workload == "both" else [args.workload]
    peaks = matmul_peaks(args.device)
    try:
        for kind in kinds:
            servers[kind].launch()
        for kind in kinds:
            servers[kind].wait_healthy()
        for kind in kinds:
            folder = folders.embedding if kind == "embed" else folders.reranker
            path = str(folder)
            tokenizer = AutoTokenizer.from_pretrained(path)
            config = json.loads((folder / "config.json").read_text())
            if kind == "embed":
                texts = make_texts(tokenizer, max(16, int(512 * args.scale)), 16, 256, seed=0)
                calls: list[Any] = [
                    texts[i : i + EMBED_CALL] for i in range(0, len(texts), EMBED_CALL)
                ]
                lengths = [len(tokenizer(t).input_ids) for t in texts]
                items = len(texts)
            else:
                queries = make_texts(tokenizer, max(2, int(16 * args.scale)), 8, 16, seed=1)
                docs = make_texts(tokenizer, 32 * len(queries), 16, 256, seed=2)
                calls = [(q, docs[32 * i : 32 * (i + 1)]) for i, q in enumerate(queries)]
                rerank = RerankTokenizer(LiteralTokenizer.from_folder(folder), MAX_LENGTH)
                prompts = rerank.encode(
                    [(q, d) for q, ds in calls for d in ds], DEFAULT_INSTRUCTION
                ).prompts
                lengths = [len(p) for p in prompts]
                items = len(prompts)
            common = {"kind": kind, "path": path, "calls": calls, "device": args.device}
            rows = [
                measure(
                    "local engine (transformers)",
                    "benchmarks.bench_server.setup",
                    args.device,
                    {**common, "base_url": None, "callers": 1, "marker": MARKERS[0]},
                )
            ]
            for callers, marker in zip(CALLERS, MARKERS[1:], strict=True):
                url = servers[kind].url
                rows.append(
                    measure(
                        f"server, {callers} caller{'s' if callers > 1 else ''}",
                        "benchmarks.bench_server.setup",
                        args.device,
                        {**common, "base_url": url, "callers": callers, "marker": marker},
                    )
                )
            print_table(
                f"{kind}: {len(calls)} calls, backend='server' on a local vLLM server "
                f"({args.shape} shape, {args.device})",
                rows,
                items=items,
                tokens=sum(lengths),
                flops=sum(sequence_flops(config, n) for n in lengths),
                peaks=peaks,
                baselines=["local engine (transformers)"],
            )
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
