"""The OpenVINO backend: qwen3-rag's CPU decoder (``qwen3_core.decoder``) converted to
OpenVINO and run by its CPU plugin in float32. It gets the same token ids and is read the same
way as the transformers backend (right-padded batches, the hidden state at each last real
position), so the two backends' results agree to float32 rounding.

Converting traces the decoder once per checkpoint and keeps the result (OpenVINO IR) in a
cache folder, under a key made of the checkpoint's files and of the code and versions that
shaped the conversion; OpenVINO's own cache keeps the compiled graph (without the weights)
beside it. Later loads read both.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import os
import shutil
import tempfile
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import torch

from qwen3_core import decoder as decoder_module
from qwen3_core.backends.options import OpenVINOOptions
from qwen3_core.checkpoints import open_folder
from qwen3_core.decoder import DecoderConfig, DecoderOutput
from qwen3_core.errors import first_line
from qwen3_core.hub import HubOptions, resolve_model_folder
from qwen3_core.loading import LoadedModel, plain_decoder
from qwen3_core.variants import ModelKind, ModelKindError

MODEL_FILE = "decoder.xml"
"""The converted model's file in its cache folder (its weights lie beside it, ``.bin``)."""

# The precision is owned: OpenVINO would run bfloat16 on CPUs with AMX or AVX512-BF16.
_FIXED_PROPERTIES = {"INFERENCE_PRECISION_HINT": "f32"}


def default_cache_folder() -> Path:
    """``qwen3-rag/openvino`` in the user's cache folder (``$XDG_CACHE_HOME``, else
    ``~/.cache``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "qwen3-rag" / "openvino"


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(
            "backend='openvino' needs OpenVINO: pip install 'qwen3-rag[openvino]'"
        ) from exc
    return openvino


def conversion_key(folder: Path) -> str:
    """What the converted model depends on: the checkpoint's files (names, sizes, times), the
    decoder's code, and the versions of OpenVINO and torch that traced it."""
    files = sorted(path for path in folder.iterdir() if path.suffix in (".safetensors", ".json"))
    stamps = [
        (path.name, stat.st_size, stat.st_mtime_ns) for path in files for stat in [path.stat()]
    ]
    source = hashlib.sha256(inspect.getsource(decoder_module).encode()).hexdigest()
    parts = [
        str(folder.resolve()),
        stamps,
        source,
        importlib.metadata.version("openvino"),
        torch.__version__,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


class _Traced(torch.nn.Module):
    """The decoder as a function of the token ids alone, which is what gets converted."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden: torch.Tensor = self.decoder(input_ids).last_hidden_state
        return hidden


def _not_covered(folder: Path) -> ModelKindError:
    return ModelKindError(
        f"'{folder}': backend='openvino' converts qwen3-rag's Qwen3 decoder, which does not "
        "cover this checkpoint (its RoPE, attention or weight dtype); use "
        "backend='transformers'"
    )


def _convert(openvino: Any, folder: Path, config: dict[str, Any], target: Path) -> None:
    """Trace the float32 decoder of ``folder`` and save it as OpenVINO IR in ``target``
    (written to a temporary folder first, so a reader never sees half a model)."""
    decoder = plain_decoder(folder, config)
    if decoder is None:
        raise _not_covered(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        example = torch.ones((1, 8), dtype=torch.long)
        shape = openvino.PartialShape([-1, -1])
        # The tracer warns of its own deprecation and of traced shapes; the converted model is
        # checked against the torch decoder by the tests, at many lengths and batches.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = openvino.convert_model(
                _Traced(decoder).eval(), example_input=(example,), input=[shape]
            )
        openvino.save_model(converted, str(staging / MODEL_FILE), compress_to_fp16=False)
        del converted, decoder
        try:
            staging.rename(target)
        except OSError:  # another process converted it first
            if not (target / MODEL_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class OpenVINODecoder(torch.nn.Module):
    """A compiled OpenVINO decoder behind the forward signature the torch runner calls:
    token ids (batch, positions) to the final hidden states. One inference at a time."""

    def __init__(self, compiled: Any, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False) -> DecoderOutput:
        if use_cache:
            raise ValueError("the OpenVINO decoder keeps no key/value cache")
        ids = input_ids.cpu().numpy()
        with self._lock:
            result = self._request.infer({0: ids})  # outputs are copies: safe to keep
        return DecoderOutput(torch.from_numpy(result[0]), None)


_loaded: weakref.WeakValueDictionary[tuple[str, ...], LoadedModel] = weakref.WeakValueDictionary()
_loaded_lock = threading.Lock()


def load_openvino_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    options: OpenVINOOptions,
    *,
    hub: HubOptions | None = None,
) -> LoadedModel:
    """The checkpoint converted (once; later from the cache folder) and compiled for
    OpenVINO's CPU plugin in float32; shared by everyone who asks with the same options.

    Raises:
        ImportError: OpenVINO is not installed.
        ModelKindError: The checkpoint is not a model of ``kind``, or not one the decoder
            covers.
        ValueError: OpenVINO refused a property in ``options.config``.
    """
    openvino = _openvino()
    folder = resolve_model_folder(model, hub or HubOptions())
    cache = Path(options.cache_folder or default_cache_folder()).expanduser()
    target = cache / conversion_key(folder)
    properties = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
        # The compiled model is cached without its weights (they stay in the converted
        # model's file): a second copy on disk would make no load faster.
        "CACHE_MODE": "OPTIMIZE_SIZE",
        **options.config,
        **_FIXED_PROPERTIES,
        "CACHE_DIR": str(cache / "compiled"),
    }
    key = (str(target), kind, repr(sorted(properties.items())))
    with _loaded_lock:
        hit = _loaded.get(key)
        if hit is not None:
            return hit
        checkpoint = open_folder(folder, kind)
        settings = DecoderConfig.from_config(checkpoint.config)
        if settings is None:
            raise _not_covered(folder)
        if not (target / MODEL_FILE).is_file():
            _convert(openvino, folder, checkpoint.config, target)
        try:
            compiled = openvino.Core().compile_model(str(target / MODEL_FILE), "CPU", properties)
        except RuntimeError as exc:
            reason = first_line(exc)
            raise ValueError(
                f"OpenVINO could not compile the model with config={dict(options.config)!r}: "
                f"{reason[:300]}"
            ) from exc
        loaded = LoadedModel(
            folder,
            kind,
            torch.device("cpu"),
            torch.float32,
            checkpoint.tokenizer,
            OpenVINODecoder(compiled, settings),
            checkpoint.config,
            None,
            checkpoint.variant,
        )
        _loaded[key] = loaded
        return loaded
