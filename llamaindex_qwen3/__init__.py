"""LlamaIndex integration for qwen3-rag (see issue: LlamaIndex adapter)."""
