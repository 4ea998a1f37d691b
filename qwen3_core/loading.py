"""Loading a checked Qwen3 checkpoint into a torch model, each at most once per process.

The checkpoint is recognised first (``qwen3_core.checkpoints``), which checks that every
tensor the decoder needs is in the files. Only the base model is loaded, for either kind: a
reranker's two score rows are read from the files by ``LoadedModel.score_rows``, never its
151k-row lm_head.

On CPU the decoder is ``qwen3_core.decoder.Qwen3Decoder``, built straight from the
safetensors files: each linear weight is read into a reused buffer and packed for its kernel
(oneDNN float32, or int8), so no second copy of the weights stays resident, and transformers
is never imported. Elsewhere (GPUs, ``model_kwargs``, configs that decoder does not cover) it
is transformers' ``Qwen3Model``, whose loading report is checked again, so no weight the model
uses is ever left randomly initialised.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qwen3_core.backend_options import Quantization, TransformersOptions
from qwen3_core.checkpoints import Checkpoint, FolderFiles, is_current, open_folder
from qwen3_core.decoder import (
    MLP,
    Attention,
    DecoderConfig,
    DecoderLayer,
    Qwen3Decoder,
    RMSNorm,
    TokenEmbedding,
)
from qwen3_core.defaults import ModelKind
from qwen3_core.devices import resolve_device, resolve_dtype
from qwen3_core.errors import ModelFilesChangedError, ModelKindError, first_line
from qwen3_core.hub import HubOptions, import_names, resolve_model_folder
from qwen3_core.json_files import read_json
from qwen3_core.kernels.int8 import (
    Int8Kernel,
    check_int8_supported,
    int8_kernel,
    int8_linears,
    quantize_int8,
)
from qwen3_core.kernels.onednn_linear import (
    onednn_linear_wanted,
    onednn_or_plain,
    use_onednn_linears,
)
from qwen3_core.kernels.vector_math import prepare_vector_math
from qwen3_core.tokenization import LiteralTokenizer
from qwen3_core.variants import Variant
from qwen3_core.weights import FileTokenEmbedding, SafetensorsFolder

DECODER_SWITCH = "QWEN3_RAG_CPU_DECODER"
"""``qwen3-rag`` (the default) or ``transformers``: which decoder CPU models run."""


@dataclass(eq=False)
class LoadedModel:
    """A tokenizer and a base model (no head) in eval mode on one device; shared by everyone
    who asks for it."""

    folder: Path
    kind: ModelKind
    device: torch.device
    dtype: torch.dtype
    tokenizer: LiteralTokenizer
    model: torch.nn.Module
    config: dict[str, Any] = field(default_factory=dict)
    quantization: Quantization | None = None
    variant: Variant | None = None
    files: FolderFiles | None = None
    """The folder's files as they were before the model was read from them: a model is
    shared only while they are unchanged."""
    _rows: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def checkpoint(self) -> Checkpoint:
        assert self.variant is not None
        return Checkpoint(
            self.folder, self.kind, self.config, self.tokenizer, self.variant, self.files
        )

    def score_rows(self, *, yes_id: int, no_id: int) -> torch.Tensor:
        """A reranker's float32 rows [no, yes] on the model's device, whose softmax over
        ``state @ rows.T`` is P(yes) (so ``state @ (yes - no)`` is the log-odds), with the
        values the full head would have in the model's dtype:

        - a causal LM: the lm_head rows of the two tokens (the embedding rows when tied);
        - sequence classification, two labels: the score rows of "no" and "yes";
        - sequence classification, one label: rows [0, w], so the log-odds is its score.

        Read from the files once (while they are those the model was loaded from), then
        kept: engines made later on this model never read the files again.
        """
        rows = self._rows.get((yes_id, no_id))
        if rows is None:
            rows = self._read_score_rows(yes_id=yes_id, no_id=no_id)
            rows = self._rows.setdefault((yes_id, no_id), rows)
        return rows

    def _read_score_rows(self, *, yes_id: int, no_id: int) -> torch.Tensor:
        variant = self.variant
        assert variant is not None
        if variant.architecture == "seq_cls":
            labels = list(range(variant.num_labels))
            weight = _stored_rows(self.folder, ("score.weight",), labels).to(self.dtype).float()
            if variant.num_labels == 1:
                rows = torch.stack([torch.zeros_like(weight[0]), weight[0]])
            else:
                rows = weight[[1 - variant.yes_label, variant.yes_label]]
        else:
            tied = self.config.get("tie_word_embeddings", False)
            names = ("model.embed_tokens.weight", "embed_tokens.weight") if tied else ()
            rows = _stored_rows(self.folder, (*names, "lm_head.weight"), [no_id, yes_id])
            rows = rows.to(self.dtype).float()
        _check_unchanged(self.files)
        return rows.to(self.device)


_cache: weakref.WeakValueDictionary[tuple[str, ...], LoadedModel] = weakref.WeakValueDictionary()
_cache_lock = threading.Lock()
# One lock per name as asked for, then one per resolved folder: threads asking for one folder
# under different names ("m", "m/", "./m") must not load it twice either.
_key_locks: dict[tuple[str, ...], threading.Lock] = {}
_folder_locks: dict[tuple[str, ...], threading.Lock] = {}


def _load(
    folder: Path,
    kind: ModelKind,
    device: torch.device,
    dtype: torch.dtype,
    quantization: Quantization | None,
    model_kwargs: Mapping[str, Any],
    own_decoder: bool,
    kernel: Int8Kernel | None,
) -> LoadedModel:
    """``kernel``: the int8 kernel to quantize with (with ``quantization``), the one that
    named the cached variant."""
    checkpoint = open_folder(folder, kind)
    if device.type == "cpu":
        prepare_vector_math()
    model: torch.nn.Module | None = None
    if own_decoder:
        model = _own_decoder(folder, checkpoint.config, dtype, kernel)
    if model is None:
        model = _transformers_decoder(folder, device, dtype, model_kwargs)
        if kernel is not None:
            quantize_int8(model, kernel)
        elif _runs_onednn(device, dtype):
            use_onednn_linears(model)
    _check_unchanged(checkpoint.files)
    return LoadedModel(
        folder,
        kind,
        device,
        dtype,
        checkpoint.tokenizer,
        model,
        checkpoint.config,
        quantization,
        checkpoint.variant,
        checkpoint.files,
    )


def _check_unchanged(files: FolderFiles | None) -> None:
    """Refuse what was just read from a folder whose files changed while it was read: it
    may be part old weights, part new."""
    changed = None if files is None else files.changed()
    if changed is not None:
        raise ModelFilesChangedError(
            f"'{changed}' changed while the model was being read from it: load the model "
            "again once the new files are written"
        )


def _runs_own_decoder(device: torch.device, model_kwargs: Mapping[str, Any]) -> bool:
    choice = os.environ.get(DECODER_SWITCH, "qwen3-rag").strip().lower()
    if choice not in ("qwen3-rag", "transformers"):
        raise ValueError(f"{DECODER_SWITCH}={choice!r}: use 'qwen3-rag' or 'transformers'")
    # model_kwargs are transformers' from_pretrained arguments: only transformers reads them.
    return choice == "qwen3-rag" and device.type == "cpu" and not model_kwargs


_PROJECTIONS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)

_FUSED_INT8 = {
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"): "qkv_proj",
    ("mlp.gate_proj", "mlp.up_proj"): "gate_up_proj",
}
"""int8 only: one GEMM for the projections that read the same input. Its integer sums give
each output exactly what a GEMM of its own gives, and the input is quantized once, not three
or two times (these layers ran 12-18% faster on the 0.6B shape, 2 cores, 512 rows). On
oneDNN float32 the same fusion measured no faster, so float32 keeps transformers' layers."""


def _projection_groups(
    files: SafetensorsFolder, prefix: str, fuse: bool
) -> list[tuple[tuple[str, ...], str]]:
    """Per decoder layer, the projections built as one linear each, and the module name each
    is given: fused groups where ``fuse`` and their biases agree (all or none present)."""
    groups: list[tuple[tuple[str, ...], str]] = []
    rest = list(_PROJECTIONS)
    for group, name in _FUSED_INT8.items() if fuse else ():
        biases = {f"{prefix}layers.0.{member}.bias" in files for member in group}
        if len(biases) == 1:
            groups.append((group, name))
            rest = [member for member in rest if member not in group]
    groups += [((member,), member.split(".")[1]) for member in rest]
    return groups


def plain_decoder(folder: Path, config: dict[str, Any]) -> Qwen3Decoder | None:
    """The float32 CPU decoder with ``nn.Linear`` layers (which tracers can follow, unlike
    packed kernels), or None where ``Qwen3Decoder`` does not cover the checkpoint. Not
    shared: for converting the model to another runtime."""
    return _own_decoder(folder, config, torch.float32, None, plain=True)


def _own_decoder(
    folder: Path,
    config: dict[str, Any],
    dtype: torch.dtype,
    kernel: Int8Kernel | None,
    *,
    plain: bool = False,
) -> Qwen3Decoder | None:
    """The CPU decoder built from the files, or None where ``Qwen3Decoder`` does not cover
    the config or a tensor's dtype (transformers loads those)."""
    settings = DecoderConfig.from_config(config)
    files = SafetensorsFolder.open(folder)
    if settings is None or files is None:
        return None
    if kernel is not None:
        make_linear = int8_linears(kernel)
    elif not plain and _runs_onednn(torch.device("cpu"), dtype):
        make_linear = onednn_or_plain
    else:
        make_linear = _plain
    prefix = "model." if "model.embed_tokens.weight" in files else ""
    local = threading.local()

    def stacked(names: list[str]) -> torch.Tensor:
        # One buffer per thread and dtype, refilled for each weight: a kernel keeps its own
        # packed copy, so the plain weights are never all resident at once. A fused
        # group's weights are read into consecutive rows of one buffer.
        buffers = local.__dict__.setdefault("buffers", {})
        entries = [files.entries[prefix + name] for name in names]
        rows = sum(entry.shape[0] for entry in entries)
        out = _buffer(buffers, dtype, (rows, *entries[0].shape[1:]))
        start = 0
        for name, entry in zip(names, entries, strict=True):
            part = out[start : start + entry.shape[0]]
            if entry.dtype == dtype:
                files.read(prefix + name, part)
            else:
                stored = files.read(prefix + name, _buffer(buffers, entry.dtype, entry.shape))
                part.copy_(stored)
            start += entry.shape[0]
        return out

    def small(name: str) -> torch.Tensor:
        return files.read(prefix + name).to(dtype)

    def norm(name: str) -> RMSNorm:
        return RMSNorm(small(name), settings.rms_norm_eps)

    def build(names: list[str]) -> torch.nn.Module:
        weight = stacked([f"{name}.weight" for name in names])
        biases = [f"{name}.bias" for name in names]
        bias = torch.cat([small(b) for b in biases]) if prefix + biases[0] in files else None
        linear = _linear(weight, bias)
        module = make_linear(linear)
        if module is linear:  # kept as it is: give it a weight of its own
            linear.weight = torch.nn.Parameter(weight.clone(), requires_grad=False)
        _release_free_memory()
        return module

    groups = _projection_groups(files, prefix, fuse=kernel is not None)
    work = [
        [f"layers.{index}.{member}" for member in group]
        for index in range(settings.num_hidden_layers)
        for group, _ in groups
    ]
    # One weight per core at a time: fbgemm's int8 packing runs on one thread, and reading
    # and packing overlap (measured on 2 cores: int8 1.5x faster to load).
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        built = iter(pool.map(build, work))
    layers = []
    for index in range(settings.num_hidden_layers):
        block = f"layers.{index}."
        linears = {name: next(built) for _, name in groups}
        attention = Attention(
            settings,
            linears,
            norm(f"{block}self_attn.q_norm.weight"),
            norm(f"{block}self_attn.k_norm.weight"),
        )
        layers.append(
            DecoderLayer(
                attention,
                MLP(linears),
                norm(f"{block}input_layernorm.weight"),
                norm(f"{block}post_attention_layernorm.weight"),
            )
        )
    table = prefix + "embed_tokens.weight"
    # Rows read as tokens are first looked up; a converter traces the plain decoder, so it
    # gets the whole table.
    embeddings = (
        TokenEmbedding(files.read(table), dtype)
        if plain
        else FileTokenEmbedding(files.rows_on_demand(table), dtype)
    )
    return Qwen3Decoder(settings, embeddings, layers, norm("norm.weight"), dtype).eval()


def _release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc only). Packing frees a
    temporary beside each packed weight it keeps, and with one heap per loading thread those
    holes would otherwise add about 200 MiB to the load's peak on the 0.6B shape."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


def _buffer(
    buffers: dict[torch.dtype, torch.Tensor], dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    """A view of ``shape`` on the thread's one buffer of ``dtype``, grown to the largest
    weight it has held: one per size would add tens of MiB per loading thread to the peak."""
    size = math.prod(shape)
    buffer = buffers.get(dtype)
    if buffer is None or buffer.numel() < size:
        buffer = buffers[dtype] = torch.empty(size, dtype=dtype)
    return buffer[:size].view(shape)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.nn.Linear:
    """An ``nn.Linear`` around the given tensors, without the random initialisation its
    constructor runs (even on the meta device that costs 0.5 s per model, and imports
    torch._decomp)."""
    linear = torch.nn.Linear.__new__(torch.nn.Linear)
    torch.nn.Module.__init__(linear)
    linear.out_features, linear.in_features = weight.shape
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    linear.register_parameter(
        "bias", None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
    )
    return linear


def _plain(linear: torch.nn.Linear) -> torch.nn.Module:
    return linear


def _stored_rows(folder: Path, names: tuple[str, ...], indices: list[int]) -> torch.Tensor:
    """Rows of a 2-d tensor in the folder's safetensors files (the first of ``names`` that
    the files hold), in its stored dtype, read without loading the rest of it."""
    from safetensors import safe_open

    def first_held(held: Any) -> str:
        return next((name for name in names if name in held), names[-1])

    index = folder / "model.safetensors.index.json"
    weight_map: dict[str, str] = read_json(index)["weight_map"] if index.is_file() else {}
    name = first_held(weight_map)
    file = weight_map[name] if weight_map else "model.safetensors"
    with safe_open(str(folder / file), framework="pt") as handle:
        if not weight_map:  # one file: the names it holds are in its header
            name = first_held(handle.keys())
        tensor = handle.get_slice(name)
        count = tensor.get_shape()[0]
        for row in indices:
            if not 0 <= row < count:
                raise ModelKindError(
                    f"'{folder}': the score reads row {row} of {name}, which has {count} rows"
                )
        return torch.cat([tensor[row : row + 1] for row in indices])


def _transformers_decoder(
    folder: Path, device: torch.device, dtype: torch.dtype, model_kwargs: Mapping[str, Any]
) -> torch.nn.Module:
    """transformers' ``Qwen3Model``: only the base model is loaded, whatever the checkpoint's
    head (an lm_head or a classifier is left in the files)."""
    (loader,) = import_names("transformers", "AutoModel")
    extra: dict[str, Any] = {"attn_implementation": "sdpa", **model_kwargs}
    if device.type == "cuda":
        extra["device_map"] = str(device)
    try:
        with quiet_transformers():
            model, report = loader.from_pretrained(
                str(folder),
                dtype=dtype,
                trust_remote_code=False,
                output_loading_info=True,
                **extra,
            )
    except (RuntimeError, ValueError, OSError) as exc:  # e.g. shapes that contradict config
        reason = first_line(exc)
        raise ModelKindError(f"'{folder}' could not be loaded: {reason[:300]}") from exc
    _check_loading_report(folder, report)
    loaded: torch.nn.Module = model.to(device).eval().requires_grad_(False)
    if device.type == "cpu":
        _own_copies(loaded)
    return loaded


def _own_copies(model: torch.nn.Module) -> None:
    """Give each parameter and buffer memory of its own. transformers leaves them views of
    a mapping of the safetensors files, which would follow the files if they were rewritten
    in place (and end in SIGBUS where one was truncated). One tensor at a time; the mapping
    goes once the last view of it does."""
    for parameter in model.parameters():  # each once, so tied weights stay tied
        parameter.data = parameter.data.clone()
    for module in model.modules():
        for name, buffer in module.named_buffers(recurse=False):
            module._buffers[name] = buffer.clone()


def _drop_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


_quiet_lock = threading.Lock()
_quiet_depth = 0
_bars_were_enabled = True


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" or "Writing model shards" bar and no load report on the user's
    terminal while a model loads or is written: the engine checks transformers' report
    itself and raises on what matters. Nested and concurrent uses restore transformers'
    settings once the last one ends."""
    global _quiet_depth, _bars_were_enabled
    (logging_utils,) = import_names("transformers.utils", "logging")
    report_logger = logging.getLogger("transformers.modeling_utils")
    with _quiet_lock:
        if _quiet_depth == 0:
            _bars_were_enabled = logging_utils.is_progress_bar_enabled()
            logging_utils.disable_progress_bar()
            report_logger.addFilter(_drop_load_report)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                if _bars_were_enabled:
                    logging_utils.enable_progress_bar()
                report_logger.removeFilter(_drop_load_report)


def _check_loading_report(folder: Path, report: Mapping[str, Any]) -> None:
    """transformers only warns about weights it had to initialise at random: here that is an
    error naming them."""
    missing = sorted(report.get("missing_keys") or [])
    mismatched = [
        str(m[0]) if isinstance(m, tuple) else str(m) for m in report.get("mismatched_keys") or []
    ]
    if missing or mismatched:
        names = missing or mismatched
        what = "missing from" if missing else "of another shape in"
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ModelKindError(
            f"'{folder}': tensors the model needs are {what} the checkpoint ({shown}); they "
            "would be left randomly initialised"
        )


def _runs_onednn(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.float32 and onednn_linear_wanted()


def load_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    device: torch.device,
    dtype: torch.dtype,
    quantization: Quantization | None = None,
    *,
    hub: HubOptions | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """The model for (model, kind, device, dtype, quantization, hub options, model_kwargs),
    loaded once per process and shared while anyone holds it; threads asking at the same
    moment wait for the one load. A quantized model is a copy of its own, never the float one
    changed in place."""
    hub = hub or HubOptions()
    kwargs = dict(model_kwargs or {})
    # A variant is a model object of its own: int8 on its kernel, or the oneDNN float32
    # linears, or the decoder, whose switches can change between loads in one process.
    variant: tuple[str, ...] = ()
    kernel: Int8Kernel | None = None  # read once: it names the variant and builds it
    if quantization is not None:
        kernel = int8_kernel()
        variant = (quantization, kernel)
    elif _runs_onednn(device, dtype):
        variant = ("onednn",)
    own_decoder = _runs_own_decoder(device, kwargs)
    options = (*variant, "qwen3-rag" if own_decoder else "", repr(sorted(kwargs.items())))
    requested = (os.fspath(model), kind, str(device), str(dtype), *hub.key(), *options)
    # A model is shared only while its folder's files are the ones it was loaded from:
    # weights saved into the folder since (a fine-tuning loop saving to one folder) are
    # loaded anew, and engines made before keep the model they have.
    with _cache_lock:
        hit = _cache.get(requested)
        lock = _key_locks.setdefault(requested, threading.Lock())
    if hit is not None and is_current(hit.files):
        return hit
    with lock:
        with _cache_lock:
            hit = _cache.get(requested)
        if hit is not None and is_current(hit.files):
            return hit
        folder = resolve_model_folder(model, hub)
        resolved = (str(folder.resolve()), kind, str(device), str(dtype), *options)
        with _cache_lock:
            folder_lock = _folder_locks.setdefault(resolved, threading.Lock())
        with folder_lock:  # always taken after a name's lock, never before: no deadlock
            with _cache_lock:
                hit = _cache.get(resolved)
            loaded = (
                hit
                if hit is not None and is_current(hit.files)
                else _load(folder, kind, device, dtype, quantization, kwargs, own_decoder, kernel)
            )
            with _cache_lock:
                _cache[resolved] = loaded
                _cache[requested] = loaded
        return loaded


def load_transformers_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    options: TransformersOptions,
    *,
    hub: HubOptions | None = None,
) -> LoadedModel:
    """``load_model`` for the transformers backend's options: the device and dtype resolved
    and checked, and int8's conditions checked before anything is read."""
    if options.quantization is not None and options.device is not None:
        _check_int8_device(str(options.device))  # before resolving: 'cuda' fails alike everywhere
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    if options.quantization is not None:
        _check_int8_device(str(device))
        if dtype != torch.float32:
            raise ValueError(
                f"quantization='int8' works from float32 weights, not {dtype}: pass "
                "dtype='float32' or leave dtype unset"
            )
        check_int8_supported()
    return load_model(
        model,
        kind,
        device,
        dtype,
        options.quantization,
        hub=hub,
        model_kwargs=options.model_kwargs,
    )


def _check_int8_device(device: str) -> None:
    if device.partition(":")[0].strip().lower() != "cpu":
        raise ValueError(
            f"quantization='int8' runs on CPU only, not on {device!r}: pass device='cpu' "
            "(on a GPU, bfloat16 is the fast path)"
        )
