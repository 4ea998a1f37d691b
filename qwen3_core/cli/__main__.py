"""Internal: ``python -m qwen3_core.cli``: the ``qwen3-rag`` command."""

import sys

from qwen3_core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
