"""Internal: recognising a Qwen3-VL checkpoint before loading it, and loading it once per process.

Recognised: the official layout (a ``Qwen3VLForConditionalGeneration`` config.json over
``model.language_model.*`` and ``model.visual.*`` tensors, or a bare ``Qwen3VLModel`` save
without the ``model.`` prefix) and sentence-transformers' layout of the same folder
(``modules.json``: the transformer at the root, then last-token pooling and normalisation
for the embedder, or a logit-score module for the reranker). A text Qwen3 model is refused
by name, naming the class that loads it. Every tensor is checked to be in the files before
any weight is read.

What runs is decided from the options first, as for the text models (``loading.plan``): the
device, the dtype and, on CPU in float32, the linear kernel, which is put in place of every
``nn.Linear`` of the decoder layers and of the vision tower (oneDNN's packed float32 GEMM
where it passes its check; ``qwen3_core.kernels.onednn_linear``). On CPU every tensor is
first copied out of the mapped files, as for the text models, so the process holds one copy
of the weights. A reranker's "yes" and "no" rows are read from the files at load, never the
151k-row lm_head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from qwen3_core.backend_options import TransformersOptions
from qwen3_core.checkpoints import FolderFiles, is_current
from qwen3_core.errors import ModelKindError, first_line
from qwen3_core.hub import HubOptions, import_names, resolve_model_folder
from qwen3_core.json_files import read_json
from qwen3_core.kernels.decoder_linears import swap_decoder_linears, swap_linears
from qwen3_core.kernels.vector_math import prepare_vector_math
from qwen3_core.loading import quiet_transformers
from qwen3_core.loading.memory import release_free_memory
from qwen3_core.loading.plan import LoadPlan, plan_load
from qwen3_core.loading.transformers_model import ready_on
from qwen3_core.safetensors_index import SINGLE_FILE, weight_map
from qwen3_core.sharing import SharedCache
from qwen3_core.tokenization import LiteralTokenizer
from qwen3_core.variants import VL_LOADER, read_config, tensor_shapes

VLKind = Literal["embedding", "reranker"]
# The token ids the released models' configs give (and the tokenizer must agree with).
VISION_TOKENS = {
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}


@dataclass(frozen=True)
class VLCheckpoint:
    """A recognised Qwen3-VL checkpoint folder (nothing loaded)."""

    folder: Path
    kind: VLKind
    config: dict[str, Any]
    prefix: str
    """What the tensor names start with before ``visual.`` / ``language_model.``."""
    layout: str
    """``official`` or ``sentence-transformers``."""
    head: str | None = None
    """For the reranker: the tensor whose rows score "yes" and "no"."""
    score_ids: tuple[int, int] | None = None
    """For a sentence-transformers reranker: the (true, false) token ids its score module
    compares; None: the tokens "yes" and "no"."""

    @property
    def hidden_size(self) -> int:
        return int(self.config["text_config"]["hidden_size"])


def _st_layout(folder: Path, kind: VLKind) -> tuple[str, tuple[int, int] | None]:
    """The layout's name, and the token ids a cross-encoder's score module names."""
    path = folder / "modules.json"
    if not path.is_file():
        return "official", None
    score_ids = None
    modules = read_json(path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelKindError(f"'{path}' is not a list of sentence-transformers modules")
    for module in modules:
        name = str(module.get("type", "")).rsplit(".", 1)[-1]
        where = str(module.get("path", ""))
        if name == "Transformer":
            if where not in ("", "."):
                raise ModelKindError(
                    f"'{folder}' keeps its transformer in the subfolder '{where}': load that "
                    "subfolder"
                )
        elif name in ("Pooling", "Normalize"):
            if kind == "reranker":
                raise ModelKindError(
                    f"'{folder}' is a sentence-transformers embedding model: load it with "
                    "Qwen3VLEmbedder"
                )
            if name == "Pooling":
                config_path = folder / where / "config.json"
                config = read_json(config_path) if config_path.is_file() else {}
                mode = config.get("pooling_mode") if isinstance(config, dict) else None
                flags = {
                    k for k, v in (config.items() if isinstance(config, dict) else ()) if v is True
                }
                if mode != "lasttoken" and flags != {"pooling_mode_lasttoken"}:
                    raise ModelKindError(
                        f"'{folder}' pools with another mode than the last token (its "
                        f"{where}/config.json): Qwen3-VL-Embedding pools the last token"
                    )
        elif name == "LogitScore":
            if kind == "embedding":
                raise ModelKindError(
                    f"'{folder}' is a sentence-transformers cross-encoder (a reranker): load "
                    "it with Qwen3VLReranker"
                )
            config_path = folder / where / "config.json"
            config = read_json(config_path) if config_path.is_file() else {}
            ids = [config.get(k) if isinstance(config, dict) else None for k in _SCORE_KEYS]
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise ModelKindError(
                    f"'{config_path}' gives true_token_id={ids[0]!r}, false_token_id="
                    f"{ids[1]!r}: Qwen3-VL-Reranker compares the logits of two tokens"
                )
            score_ids = (int(ids[0]), int(ids[1]))  # type: ignore[arg-type]
        else:
            raise ModelKindError(
                f"'{folder}' has a sentence-transformers {name} module that "
                f"{'Qwen3-VL-Embedding' if kind == 'embedding' else 'Qwen3-VL-Reranker'} "
                "does not have: it cannot be reproduced exactly here"
            )
    return "sentence-transformers", score_ids


_SCORE_KEYS = ("true_token_id", "false_token_id")


def recognise(folder: Path, kind: VLKind) -> VLCheckpoint:
    """Check that ``folder`` holds a Qwen3-VL checkpoint ``kind`` can run, without reading
    any weights.

    Raises:
        ModelKindError: It is a text Qwen3 model, another model, a layout that cannot be
            reproduced exactly, or tensors are missing; the message says which.
    """
    config = read_config(folder, kind, vision=True)
    for part in ("text_config", "vision_config"):
        if not isinstance(config.get(part), dict):
            raise ModelKindError(f"'{folder / 'config.json'}' has no {part}")
    layout, score_ids = _st_layout(folder, kind)
    shapes = tensor_shapes(folder)
    if shapes is None:
        raise ModelKindError(f"'{folder}' has no safetensors weights")
    prefix = next(
        (p for p in ("model.", "") if f"{p}language_model.embed_tokens.weight" in shapes), None
    )
    if prefix is None:
        raise ModelKindError(
            f"'{folder}' has no language_model.embed_tokens.weight: it is not a Qwen3-VL "
            "checkpoint in a layout this engine reads"
        )
    if f"{prefix}visual.patch_embed.proj.weight" not in shapes:
        raise ModelKindError(
            f"'{folder}' has no vision tower ({prefix}visual.*): it cannot read images"
        )
    head = None
    if kind == "reranker":
        tied = bool(
            config.get("tie_word_embeddings") or config["text_config"].get("tie_word_embeddings")
        )
        head = f"{prefix}language_model.embed_tokens.weight" if tied else "lm_head.weight"
        if head not in shapes:
            raise ModelKindError(
                f"'{folder}' has no {head}: a Qwen3-VL reranker scores with its lm_head's "
                "'yes' and 'no' rows"
            )
    if score_ids is not None and head is not None:
        rows = shapes[head][0]
        for name, value in zip(_SCORE_KEYS, score_ids, strict=True):
            if not 0 <= value < rows:
                raise ModelKindError(
                    f"'{folder}' names {name}={value}, outside the {rows} rows of {head}"
                )
    return VLCheckpoint(folder, kind, config, prefix, layout, head, score_ids)


def _check_tokens(checkpoint: VLCheckpoint, token_to_id: Any) -> None:
    for key, token in VISION_TOKENS.items():
        wanted = checkpoint.config.get(key)
        found = token_to_id(token)
        if wanted is not None and found != wanted:
            raise ModelKindError(
                f"'{checkpoint.folder}': config.json gives {key}={wanted}, but the tokenizer "
                f"has {token!r} at {found}"
            )


@dataclass(eq=False)
class LoadedVLModel:
    """A ``Qwen3VLModel`` (vision tower and language model, no head) in eval mode, with its
    tokenizer and, for a reranker, its score direction."""

    checkpoint: VLCheckpoint
    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    tokenizer: LiteralTokenizer
    files: FolderFiles | None = None
    """The folder's files as they were before the model was read: it is shared only while
    they are unchanged."""
    score_direction: torch.Tensor | None = None
    """A reranker's float32 w_yes - w_no on ``device`` (``read_score_direction``); None for
    an embedding model."""
    resolved: Mapping[str, Any] = field(default_factory=dict)
    """The backend options' fields as the load resolved them (device, dtype, decoder,
    kernels)."""


def score_token_ids(checkpoint: VLCheckpoint, tokenizer: LiteralTokenizer) -> tuple[int, int]:
    """A reranker's (yes, no) token ids: those a sentence-transformers cross-encoder names,
    else the tokenizer's "yes" and "no".

    Raises:
        ModelKindError: The tokenizer has no "yes" or "no" token.
    """
    if checkpoint.score_ids is not None:
        return checkpoint.score_ids
    yes_id, no_id = (tokenizer.token_to_id(token) for token in ("yes", "no"))
    if yes_id is None or no_id is None:
        raise ModelKindError(f"'{checkpoint.folder}': the tokenizer has no 'yes' or 'no' token")
    return yes_id, no_id


def read_score_direction(
    checkpoint: VLCheckpoint, yes_id: int, no_id: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The float32 difference of the head's "yes" and "no" rows (in ``dtype`` first, as the
    full head would hold them) on ``device``, read from the files without the rest of the
    head."""
    from safetensors import safe_open

    head = checkpoint.head
    assert head is not None  # recognise() names it for a reranker
    folder = checkpoint.folder
    mapping = weight_map(folder)
    file = SINGLE_FILE if mapping is None else mapping[head]
    with safe_open(str(folder / file), framework="pt") as handle:
        tensor = handle.get_slice(head)
        rows = torch.cat([tensor[i : i + 1] for i in (yes_id, no_id)])
    rows = rows.to(dtype).float()
    return (rows[0] - rows[1]).to(device)


def _current(loaded: LoadedVLModel) -> bool:
    return is_current(loaded.files)


_models: SharedCache[tuple[str, ...], LoadedVLModel] = SharedCache(_current)


def load_vl_model(
    model: str | Path, kind: VLKind, options: TransformersOptions, hub: HubOptions
) -> LoadedVLModel:
    """The checkpoint recognised, then loaded (shared by engines asking for the same folder,
    kind, device, dtype, linear kernel and model_kwargs while its files are unchanged:
    weights saved into the folder again are loaded anew).

    Raises:
        ModelKindError: See ``recognise``; also a tokenizer whose vision tokens disagree
            with config.json, a reranker's tokenizer without "yes" and "no", and a load that
            leaves tensors uninitialised.
        ModelNotFoundError: The model is neither a folder nor a hub id that can be fetched.
        ValueError: A backend setting that Qwen3-VL does not take.
    """
    if options.quantization is not None:
        raise ValueError(
            f"quantization={options.quantization!r} is not available for {VL_LOADER[kind]}: "
            "leave it unset"
        )
    if options.share_prefix is not None:
        raise ValueError(f"share_prefix applies to Qwen3Reranker, not to {VL_LOADER[kind]}")
    if options.decoder == "qwen3-rag":
        raise ValueError(
            f"decoder='qwen3-rag' covers text Qwen3 models; {VL_LOADER[kind]} runs "
            "transformers' Qwen3VLModel: leave decoder unset"
        )
    # transformers' Qwen3VLModel whether or not decoder says so: one model for both asks.
    plan = replace(plan_load(options), decoder="transformers")
    folder = resolve_model_folder(model, hub)
    key = (str(folder.resolve()), kind, *plan.key())

    def build() -> LoadedVLModel:
        files = FolderFiles.of(folder)  # first: a change while it is read shows next time
        checkpoint = recognise(folder, kind)
        tokenizer = LiteralTokenizer.from_folder(folder)
        _check_tokens(checkpoint, tokenizer.token_to_id)
        direction = None
        if kind == "reranker":
            yes_id, no_id = score_token_ids(checkpoint, tokenizer)
            direction = read_score_direction(checkpoint, yes_id, no_id, plan.dtype, plan.device)
        if plan.device.type == "cpu":
            prepare_vector_math()
        return LoadedVLModel(
            checkpoint,
            _load(folder, plan),
            plan.device,
            plan.dtype,
            tokenizer,
            files,
            direction,
            plan.resolved("transformers"),
        )

    return _models.get_or_build(key, build)


def _load(folder: Path, plan: LoadPlan) -> torch.nn.Module:
    device, dtype = plan.device, plan.dtype
    (model_class,) = import_names("transformers", "Qwen3VLModel")
    extra: dict[str, Any] = {"attn_implementation": "sdpa", **plan.model_kwargs}
    if device.type == "cuda":
        extra["device_map"] = str(device)
    try:
        with quiet_transformers():
            model, report = model_class.from_pretrained(
                str(folder), dtype=dtype, trust_remote_code=False, output_loading_info=True, **extra
            )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelKindError(f"'{folder}' could not be loaded: {first_line(exc)[:300]}") from exc
    missing = sorted(report.get("missing_keys") or [])
    mismatched = [
        str(m[0]) if isinstance(m, tuple) else str(m) for m in report.get("mismatched_keys") or []
    ]
    if missing or mismatched:
        names = missing or mismatched
        raise ModelKindError(
            f"'{folder}': tensors the model needs are "
            f"{'missing from' if missing else 'of another shape in'} the checkpoint "
            f"({', '.join(names[:5])}{' and more' if len(names) > 5 else ''}); they would be "
            "left randomly initialised"
        )
    # Copied out of the mapped files before the swap, since a packed linear keeps its bias
    # as given: no view is left to keep the mapping, and with it every page read to pack,
    # resident beside the packed copies.
    loaded: Any = ready_on(model, device)
    # The text models' linear kernel (the plan's choice, made once for both), on the
    # language model's decoder layers and on the vision tower's blocks and mergers.
    make_linear = plan.make_linear()
    swap_decoder_linears(loaded, make_linear)
    swap_linears(loaded.visual, make_linear)
    if device.type == "cpu":
        release_free_memory()  # the copies the packed weights replaced: 1.2 GB on the 2B shape
    vl_model: torch.nn.Module = loaded
    return vl_model
