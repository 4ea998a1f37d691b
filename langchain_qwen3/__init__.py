"""LangChain integration for qwen3-rag (see issue: LangChain adapter)."""
