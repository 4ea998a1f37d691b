"""Internal: ``python -m qwen3_core.testing [DIR]``: write the offline test models."""

from __future__ import annotations

import argparse
import sys

from qwen3_core.extras import missing_message

# Known without importing torch, so that --help and a missing package need none.
SHAPE_NAMES = ("tiny", "tiny-36-layers", "small", "0.6b", "4b", "8b")


def main() -> int:
    """Parse the command line and write the models (and, with ``--variants``, every
    variant), printing each folder; without the testing extra, say what to install."""
    parser = argparse.ArgumentParser(
        prog="python -m qwen3_core.testing",
        description="Write deterministic random Qwen3 embedding and reranker checkpoints "
        "with the real Qwen3 tokenizer (no network needed).",
    )
    parser.add_argument(
        "folder",
        nargs="?",
        help="where to write them (default: $QWEN3_RAG_TEST_MODELS, else "
        "~/.cache/qwen3-rag/test-models, where the tests and `qwen3-rag demo --tiny` look)",
    )
    parser.add_argument("--shape", choices=SHAPE_NAMES, default="tiny")
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also write every checkpoint variant (tied and untied, sequence-classification, "
        "sentence-transformers layouts, sharded bfloat16, causal-LM-saved embedder)",
    )
    args = parser.parse_args()
    problem = missing_message("building the test models", "testing")
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from qwen3_core.testing.cache import models_cache_folder
    from qwen3_core.testing.models import build_test_models
    from qwen3_core.testing.variants import build_variants

    root = models_cache_folder() if args.folder is None else args.folder
    models = build_test_models(root, args.shape)
    print(f"embedding model: {models.embedding}")
    print(f"reranker model:  {models.reranker}")
    if args.variants:
        variants = build_variants(root, models, args.shape)
        for name, folder in {**variants.rerankers, **variants.embeddings}.items():
            print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
