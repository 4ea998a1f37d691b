"""Internal (import its public names from ``qwen3_core.testing``): where the offline test models
are kept, and how a folder there is built once.

The test suite, ``qwen3-rag demo --tiny``, the example notebooks and the benchmarks all build
into ``models_cache_folder()``, so each model is written once per machine and then reused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

CACHE_VARIABLE = "QWEN3_RAG_TEST_MODELS"
"""The environment variable that moves the cache folder."""

COMPLETE = "complete"
"""The file a finished folder holds; it is written before the folder gets its final name."""


def models_cache_folder() -> Path:
    """The folder the offline test models are built in and reused from.

    Returns:
        ``$QWEN3_RAG_TEST_MODELS`` when it is set, else ``qwen3-rag/test-models`` in the
        user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``).
    """
    folder = os.environ.get(CACHE_VARIABLE)
    if folder:
        return Path(folder).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "qwen3-rag" / "test-models"


def build_once(folder: Path, write: Callable[[Path], None]) -> None:
    """Make ``folder`` with ``write`` unless a complete one is already there.

    ``write`` fills a private folder beside ``folder``, which is renamed into place once
    complete: readers never see a half-written model, so they take no lock. Builders take a
    lock file, so of several processes asking at once one builds and the rest wait for it and
    reuse its work instead of writing over it.

    Args:
        folder: The folder to make.
        write: Writes the contents into the folder it is given.
    """
    if (folder / COMPLETE).exists():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / f".{folder.name}.lock"):
        if (folder / COMPLETE).exists():  # built while this process waited for the lock
            return
        # Only the lock holder writes here: a folder already there was left by a killed builder.
        staging = folder.parent / f".{folder.name}.building"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        try:
            write(staging)
            (staging / COMPLETE).write_text("ok\n")
            if folder.exists():  # half-written by an older builder that wrote in place
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
