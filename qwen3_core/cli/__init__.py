"""Internal: ``qwen3-rag``, the command line: ``qwen3-rag demo`` runs the two-stage search.

Arguments and files are checked before torch, transformers or the engines are imported, so a
mistake is reported at once rather than after seconds of start-up.
"""
