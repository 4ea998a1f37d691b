"""One engine in one fresh process: ``python -m benchmarks.peers.worker SPEC.json``.

The spec names the engine module, the model, the workload and when the driver started this
process. The worker loads the engine, gets its first result on one short text (the cold
start: from process start, imports, tokenizer and load included), warms up on a few items,
then times the whole workload (``passes`` times, keeping the fastest). It writes a JSON result
next to the spec (seconds, CPU seconds, the process's peak resident set, the cold start, each
pass's seconds) and the outputs as ``.npy`` for the fidelity columns.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
import traceback
from pathlib import Path


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss() -> int:
    """This process's resident-set high-water mark, in bytes: ``VmHWM``, which starts afresh
    at exec. ``getrusage``'s ``ru_maxrss`` would not do: Linux carries it over exec from the
    forked copy of the driver, so every worker would read at least the driver's size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text())
    result_path = spec_path.with_suffix(".result.json")
    try:
        engine = importlib.import_module(f"benchmarks.peers.{spec['engine']}").load(spec)
        engine.first()
        cold = time.monotonic() - spec["launched"]
        if spec.get("cold_only"):
            result_path.write_text(json.dumps({"cold": cold}))
            return
        workload = json.loads(Path(spec["workload"]).read_text())
        ids = workload["ids"]
        engine.run(ids[:2], workload, warmup=True)
        timed = []
        for _ in range(spec.get("passes", 1)):
            cpu, start = _cpu_seconds(), time.perf_counter()
            outputs = engine.run(ids, workload, warmup=False)
            timed.append((time.perf_counter() - start, _cpu_seconds() - cpu))
        seconds, cpu = min(timed)
        import numpy as np

        np.save(spec_path.with_suffix(".npy"), np.asarray(outputs, dtype=np.float32))
        peak = _peak_rss()
        result = {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "peak_rss": peak,
            "cold": cold,
            "passes": [round(t, 2) for t, _ in timed],
        }
        check = getattr(engine, "check", None)  # after the timing: qwen3-rag's own ids
        if check is not None:
            result.update(check(workload))
    except Exception as exc:  # reported as a row, not a crash of the whole benchmark
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    result_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
