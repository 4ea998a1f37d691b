"""Peer engines for ``python -m benchmarks.bench_peers``: one module per engine.

Each engine module has ``load(spec)``, run inside a fresh worker process
(``benchmarks.peers.worker``), which imports the engine's library and loads its model. The
loaded engine answers ``first()`` (one short text through its own tokenizer: the cold start)
and ``run(ids)`` (the timed workload on token ids the driver made with qwen3-rag's own
tokenizer, so every engine sees the same ids). Nothing here imports torch or the engines at
module level: a worker's cold start includes only what its engine needs.

The peer libraries are not dependencies of qwen3-rag; they live in their own environment
(the ``bench`` extra, see docs/performance.md).
"""
