"""The two-stage search (embedding top-k, then reranking), as the ``qwen3-rag demo`` command."""
