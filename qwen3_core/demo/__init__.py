"""Internal: the demo's corpora and its two-stage search (embedding top-k, then reranking); the
``qwen3-rag demo`` command (``qwen3_core.cli``) runs them."""
