"""Where a model comes from: a local folder, the Hugging Face Hub, or ModelScope.

The hub options (``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``source``)
apply alike to every backend: the folder is resolved here, and vLLM or a server client then
reads that folder. ``HF_ENDPOINT`` mirrors work as huggingface_hub itself reads it.
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qwen3_core.errors import ModelNotFoundError, first_line
from qwen3_core.extras import install_command

__all__ = [
    "USE_MODELSCOPE_VARIABLE",
    "HubOptions",
    "ModelSource",
    "import_names",
    "resolve_model_folder",
]

ModelSource = Literal["huggingface", "modelscope"]
SOURCES: tuple[ModelSource, ...] = ("huggingface", "modelscope")
USE_MODELSCOPE_VARIABLE = "QWEN3_RAG_USE_MODELSCOPE"

_TOKENIZER_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]
_WEIGHT_PATTERNS = [*_TOKENIZER_PATTERNS, "*.safetensors"]

_import_lock = threading.Lock()


def import_names(module: str, *names: str) -> tuple[Any, ...]:
    """``from module import names``, one thread at a time. transformers and huggingface_hub
    are lazy modules whose first import, made by several threads at the same moment, fails
    in all but one of them ("cannot import name 'AutoModel' from 'transformers'"): engines
    first built by many threads at once would fail without this lock.

    Args:
        module: The module's dotted name.
        *names: The attributes to take from it.

    Returns:
        The attributes, in the order of ``names``.

    Raises:
        ImportError: The module cannot be imported.
        AttributeError: The module has no attribute of one of the names.
    """
    with _import_lock:
        imported = importlib.import_module(module)
        return tuple(getattr(imported, name) for name in names)


def _default_source() -> ModelSource:
    value = os.environ.get(USE_MODELSCOPE_VARIABLE, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return "huggingface"
    if value in ("1", "true", "yes"):
        return "modelscope"
    raise ValueError(f"{USE_MODELSCOPE_VARIABLE}={value!r}: use 1 (ModelScope) or 0 (Hugging Face)")


@dataclass(frozen=True)
class HubOptions:
    """How a model id is fetched. A local folder ignores all of them.

    Raises:
        ValueError: ``revision`` is not a non-empty str, or ``source`` is not a known source.
        TypeError: ``token`` is not a str, a bool or None, or ``local_files_only`` is not a
            bool.
    """

    revision: str | None = None
    """A branch, tag or commit of the model repository; None: the default branch."""
    token: str | bool | None = None
    """An access token for private or gated repositories; None: the one logged in, if any."""
    cache_dir: str | os.PathLike[str] | None = None
    """Where downloads are kept; None: the hub's own default cache."""
    local_files_only: bool = False
    """Use only the local cache, never the network."""
    source: ModelSource | None = None
    """``"huggingface"`` or ``"modelscope"``; None: ModelScope when QWEN3_RAG_USE_MODELSCOPE=1,
    else the Hugging Face Hub."""

    def __post_init__(self) -> None:
        if self.revision is not None and (
            not isinstance(self.revision, str) or not self.revision.strip()
        ):
            raise ValueError(f"revision must be a non-empty string or None, got {self.revision!r}")
        if self.token is not None and not isinstance(self.token, (str, bool)):
            raise TypeError(f"token must be a string, a bool or None, got {type(self.token)}")
        if not isinstance(self.local_files_only, bool):
            raise TypeError(f"local_files_only must be a bool, got {self.local_files_only!r}")
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}: use 'huggingface' or 'modelscope'")

    def resolved_source(self) -> ModelSource:
        """The source a model id is fetched from.

        Returns:
            ``source`` when set; otherwise ``"modelscope"`` when QWEN3_RAG_USE_MODELSCOPE is
            1 (or true, yes), else ``"huggingface"``.

        Raises:
            ValueError: QWEN3_RAG_USE_MODELSCOPE holds something other than 1/0,
                true/false or yes/no.
        """
        return self.source if self.source is not None else _default_source()

    def key(self) -> tuple[str, ...]:
        """What tells two fetches of one id apart (not the token: same files either way).

        Returns:
            The source, revision, cache folder and ``local_files_only``, as strings.

        Raises:
            ValueError: As ``resolved_source`` raises it.
        """
        cache = "" if self.cache_dir is None else os.fspath(self.cache_dir)
        return (self.resolved_source(), self.revision or "", cache, str(self.local_files_only))


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or os.path.isabs(name)
    )


def resolve_model_folder(
    model: str | os.PathLike[str], hub: HubOptions | None = None, *, weights: bool = True
) -> Path:
    """A local folder as it is; a model id downloaded (or found in the local cache), without
    its weights when ``weights`` is False (a client of a model server needs only the tokenizer
    and config).

    Args:
        model: A local folder (a path that exists, or one that starts with ``.``, ``/`` or
            ``~``), or a hub id such as ``"Qwen/Qwen3-Reranker-0.6B"``.
        hub: How a hub id is fetched; None: the defaults of ``HubOptions``.
        weights: Also download the ``*.safetensors`` files, not only the tokenizer and
            config files.

    Returns:
        The model's folder: ``model`` itself for a local folder, else the downloaded (or
        cached) snapshot.

    Raises:
        ValueError: ``model`` is empty, or QWEN3_RAG_USE_MODELSCOPE holds an unknown value.
        ModelNotFoundError: The path is a file or a missing folder, or the id could not be
            fetched (not found, gated, offline with nothing cached, ...).
        ImportError: ``source="modelscope"`` without the ``modelscope`` package.
    """
    hub = hub or HubOptions()
    name = os.fspath(model)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a hub id or a folder path, got {model!r}")
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"model path '{path}' is a file; expected a model folder")
        return path
    if _looks_like_path(name):
        raise ModelNotFoundError(f"model folder '{path}' does not exist")
    patterns = _WEIGHT_PATTERNS if weights else _TOKENIZER_PATTERNS
    source = hub.resolved_source()
    try:
        if source == "modelscope":
            return _from_modelscope(name, hub, patterns)
        return _from_huggingface(name, hub, patterns)
    except ImportError:
        raise
    except Exception as exc:  # hub errors come in many types: report them all alike
        where = "ModelScope" if source == "modelscope" else "the Hugging Face Hub"
        reason = first_line(exc)
        revision = f" at revision {hub.revision!r}" if hub.revision else ""
        raise ModelNotFoundError(
            f"model '{name}'{revision} is not a local folder and could not be fetched from "
            f"{where} ({type(exc).__name__}: {reason[:200]})"
        ) from exc


def _from_huggingface(name: str, hub: HubOptions, patterns: list[str]) -> Path:
    (snapshot_download,) = import_names("huggingface_hub", "snapshot_download")
    return Path(
        snapshot_download(
            repo_id=name,
            revision=hub.revision,
            token=hub.token,
            cache_dir=None if hub.cache_dir is None else os.fspath(hub.cache_dir),
            local_files_only=hub.local_files_only,
            allow_patterns=patterns,
        )
    )


def _from_modelscope(name: str, hub: HubOptions, patterns: list[str]) -> Path:
    try:
        (snapshot_download,) = import_names("modelscope.hub.snapshot_download", "snapshot_download")
    except ImportError as exc:
        raise ImportError(
            f"source='modelscope' needs the modelscope package: {install_command('modelscope')}"
        ) from exc
    token = hub.token if isinstance(hub.token, str) else None
    return Path(
        snapshot_download(
            name,
            revision=hub.revision,
            cache_dir=None if hub.cache_dir is None else os.fspath(hub.cache_dir),
            local_files_only=hub.local_files_only,
            allow_patterns=patterns,
            **({"token": token} if token else {}),
        )
    )
