"""Seed 003's two-stage search, as the ``qwen3-rag demo`` command."""
