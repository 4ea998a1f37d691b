"""Internal: a checked Qwen3 checkpoint loaded into a torch model, each at most once per
process (``load_model``), for the transformers backend.

The checkpoint is recognised first (``qwen3_core.checkpoints``), which checks that every
tensor the decoder needs is in the files. Only the base model is loaded, for either kind: a
reranker's two score rows are read from the files at load (``head_rows``), never its 151k-row
lm_head. On CPU the decoder is qwen3-rag's own, built from the files (``own_decoder``);
elsewhere (GPUs, ``model_kwargs``, configs that decoder does not cover) it is transformers'
``Qwen3Model`` (``transformers_model``), whose loading report is checked again, so no weight
the model uses is ever left randomly initialised. What runs is decided from the options
first (``plan``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qwen3_core.backend_options import Decoder, TransformersOptions
from qwen3_core.checkpoints import Checkpoint, FolderFiles, is_current, open_folder
from qwen3_core.defaults import ModelKind
from qwen3_core.errors import ModelFilesChangedError
from qwen3_core.hub import HubOptions, resolve_model_folder
from qwen3_core.kernels.vector_math import prepare_vector_math
from qwen3_core.loading.head_rows import score_rows
from qwen3_core.loading.own_decoder import own_decoder, plain_decoder
from qwen3_core.loading.plan import LoadPlan, plan_load
from qwen3_core.loading.transformers_model import quiet_transformers, transformers_decoder
from qwen3_core.sharing import SharedCache

__all__ = ["LoadedModel", "load_model", "plain_decoder", "quiet_transformers"]

logger = logging.getLogger("qwen3_core")


@dataclass(eq=False)
class LoadedModel:
    """A checkpoint's base model (no head) in eval mode on one device, with a reranker's score
    rows; shared by everyone who asks for it."""

    checkpoint: Checkpoint
    """The checkpoint, its files as they were before the model was read from them: a model
    is shared only while they are unchanged."""
    device: torch.device
    dtype: torch.dtype
    model: torch.nn.Module
    score_rows: torch.Tensor | None = None
    """A reranker's float32 rows [no, yes] on ``device`` (``head_rows.score_rows``); None for
    an embedding model."""
    resolved: Mapping[str, Any] = field(default_factory=dict)
    """The backend options' fields as the load resolved them (device, dtype, decoder,
    kernels)."""

    @classmethod
    def of(
        cls,
        checkpoint: Checkpoint,
        device: torch.device,
        dtype: torch.dtype,
        model: torch.nn.Module,
        resolved: Mapping[str, Any] | None = None,
    ) -> LoadedModel:
        """``model`` with the score rows of a reranker read from the checkpoint's files."""
        rows = score_rows(checkpoint, dtype, device) if checkpoint.kind == "reranker" else None
        return cls(checkpoint, device, dtype, model, rows, dict(resolved or {}))


def _current(loaded: LoadedModel) -> bool:
    return is_current(loaded.checkpoint.files)


# A model is shared only while its folder's files are the ones it was loaded from: weights
# saved into the folder since (a fine-tuning loop saving to one folder) are loaded anew, and
# engines made before keep the model they have. By the name asked for, then by resolved
# folder: threads asking for one folder under different names ("m", "m/", "./m") must not
# load it twice either (a name's key is always taken before a folder's: no deadlock).
_by_name: SharedCache[tuple[str, ...], LoadedModel] = SharedCache(_current)
_by_folder: SharedCache[tuple[str, ...], LoadedModel] = SharedCache(_current)


def load_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    options: TransformersOptions | None = None,
    *,
    hub: HubOptions | None = None,
) -> LoadedModel:
    """The model for (model, kind, the options' device, dtype, quantization, decoder,
    kernels and model_kwargs, hub options), loaded once per process and shared while anyone
    holds it; threads asking at the same moment wait for the one load. A quantized model is
    a copy of its own, never the float one changed in place."""
    plan = plan_load(options or TransformersOptions())
    hub = hub or HubOptions()
    requested = (os.fspath(model), kind, *hub.key(), *plan.key())

    def by_folder() -> LoadedModel:
        folder = resolve_model_folder(model, hub)
        resolved = (str(folder.resolve()), kind, *plan.key())
        return _by_folder.get_or_build(resolved, lambda: _load(folder, kind, plan))

    loaded = _by_name.get_or_build(requested, by_folder)
    if plan.decoder == "qwen3-rag" and loaded.resolved["decoder"] != "qwen3-rag":
        raise _not_covered(loaded.checkpoint.folder)  # loaded by an ask that left it unset
    return loaded


def _not_covered(folder: Path) -> ValueError:
    return ValueError(
        f"decoder='qwen3-rag' does not cover '{folder}' (its config or its weights' dtypes): "
        "leave decoder unset to load it with transformers"
    )


def _load(folder: Path, kind: ModelKind, plan: LoadPlan) -> LoadedModel:
    start = time.perf_counter()
    checkpoint = open_folder(folder, kind)
    if plan.device.type == "cpu":
        prepare_vector_math()
    model: torch.nn.Module | None = None
    if plan.decoder != "transformers":
        fuse = plan.int8_kernel is not None
        model = own_decoder(folder, checkpoint.config, plan.dtype, plan.make_linear(), fuse=fuse)
        if model is None and plan.decoder == "qwen3-rag":
            raise _not_covered(folder)
    decoder: Decoder = "transformers" if model is None else "qwen3-rag"
    if model is None:
        model = transformers_decoder(folder, plan.device, plan.dtype, plan.model_kwargs)
        plan.swap_linears(model)
    loaded = LoadedModel.of(checkpoint, plan.device, plan.dtype, model, plan.resolved(decoder))
    _check_unchanged(checkpoint.files)
    logger.info(
        "loaded %s model '%s' in %.1f s (%s)",
        kind,
        folder,
        time.perf_counter() - start,
        ", ".join(f"{name}={value}" for name, value in loaded.resolved.items() if value),
    )
    return loaded


def _check_unchanged(files: FolderFiles | None) -> None:
    """Refuse what was just read from a folder whose files changed while it was read: it
    may be part old weights, part new."""
    changed = None if files is None else files.changed()
    if changed is not None:
        raise ModelFilesChangedError(
            f"'{changed}' changed while the model was being read from it: load the model "
            "again once the new files are written"
        )
