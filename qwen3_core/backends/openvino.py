"""Internal: the OpenVINO backend: qwen3-rag's CPU decoder (``qwen3_core.decoder``) converted to
OpenVINO and run by its CPU plugin in float32. It gets the same token ids and is read the same
way as the transformers backend (right-padded batches, the hidden state at each last real
position), so the two backends' results agree to float32 rounding.

Converting traces the decoder once per checkpoint and keeps the result (OpenVINO IR) in a
cache folder, under a key made of the content of the checkpoint's files and of the code and
versions that shaped the conversion, with the SHA-256 of each file written; OpenVINO's own
cache keeps the compiled graph (without the weights) inside the conversion's folder. Later
loads check the converted files against their digests, convert a damaged conversion again,
and read both.

Digesting a 0.6B checkpoint or its conversion reads gigabytes, so a file's digest is
remembered by its identity (device, inode, size, modification and change times): a write, a
truncation, a replacement or a restored modification time all move the change time, which
programs cannot set back, so any of them makes the file be read again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from qwen3_core import decoder as decoder_module
from qwen3_core.backend_options import OpenVINOOptions
from qwen3_core.backends.mapped_pages import dropped_pages
from qwen3_core.backends.transformers import LocalModel
from qwen3_core.checkpoints import open_folder
from qwen3_core.decoder import DecoderConfig, DecoderOutput
from qwen3_core.defaults import ModelKind
from qwen3_core.errors import ModelKindError, first_line
from qwen3_core.hub import HubOptions, resolve_model_folder
from qwen3_core.loading import LoadedModel, plain_decoder
from qwen3_core.loading.memory import release_free_memory
from qwen3_core.sharing import SharedCache

MODEL_FILE = "decoder.xml"
"""The converted model's file in its cache folder (its weights lie beside it, ``.bin``)."""

WEIGHTS_FILE = "decoder.bin"
"""The converted model's weights, beside ``MODEL_FILE``."""

DIGESTS_FILE = "digests.json"
"""In each conversion's folder: the size and SHA-256 of each file written there."""

MEMO_FILE = "file-digests.json"
"""In the cache folder: files' SHA-256 remembered by the files' identities."""

SETTLED_S = 2.0
"""A digest is remembered only for a file whose change time is older than this (seconds):
file times are coarse (a clock tick; 1-2 s on some file systems), and a write in the same
tick as the remembered one would keep the file's identity."""

logger = logging.getLogger("qwen3_core")

_CHUNK = 1 << 20

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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(_CHUNK))
    with path.open("rb", buffering=0) as file:
        while size := file.readinto(buffer):
            digest.update(buffer[:size])
    return digest.hexdigest()


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


class _FileDigests:
    """The SHA-256 of files, remembered in ``MEMO_FILE`` by each file's identity.

    A file is read again whenever its identity changed: any write, truncation, replacement or
    copy moves its change time (``st_ctime``), which, unlike the modification time, programs
    cannot set back (setting the modification time moves it too). A file changed again within
    the same tick of a coarse file-system clock would keep its identity, so files changed less
    than ``SETTLED_S`` before they were read are never remembered.
    """

    def __init__(self, cache: Path) -> None:
        self.path = cache / MEMO_FILE
        try:
            known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # none yet, or unreadable: every file is read
            known = {}
        self._known: dict[str, list[Any]] = known if isinstance(known, dict) else {}
        self._changed = False

    def of(self, path: Path) -> str:
        """``path``'s SHA-256 (hex).

        Raises:
            OSError: The file cannot be read.
        """
        real = os.path.realpath(path)
        identity = _identity(os.stat(real))
        known = self._known.get(real)
        if isinstance(known, list) and len(known) == 6 and known[:5] == identity:
            return str(known[5])
        started = time.time_ns()
        digest = _sha256(Path(real))
        settled = identity[4] < started - int(SETTLED_S * 1e9)
        if settled and _identity(os.stat(real)) == identity:
            self._known[real] = [*identity, digest]
            self._changed = True
        return digest

    def save(self) -> None:
        """Write what was learned (beside and renamed into place; entries of files that no
        longer exist are dropped). A cache folder that cannot be written is left as it is:
        the files are then read again next time."""
        if not self._changed:
            return
        known = {path: entry for path, entry in self._known.items() if os.path.exists(path)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, prefix=f".{MEMO_FILE}-", delete=False
            ) as file:
                json.dump(known, file)
            os.replace(file.name, self.path)
        except OSError:
            return
        self._changed = False


def _checkpoint_files(folder: Path) -> list[Path]:
    """The files a conversion reads (the config and the weights), and the other JSON files
    beside them."""
    return sorted(path for path in folder.iterdir() if path.suffix in (".safetensors", ".json"))


def conversion_key(folder: Path, digests: _FileDigests) -> str:
    """What the converted model depends on: the content of the checkpoint's files, the
    decoder's code, and the versions of OpenVINO and torch that traced it."""
    files = [(path.name, digests.of(path)) for path in _checkpoint_files(folder)]
    source = hashlib.sha256(inspect.getsource(decoder_module).encode()).hexdigest()
    parts = [files, source, importlib.metadata.version("openvino"), torch.__version__]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _record(folder: Path, names: Iterable[str]) -> None:
    """Write ``DIGESTS_FILE`` in ``folder``: the size and SHA-256 of each of ``names``."""
    record = {
        name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
        for name in names
    }
    (folder / DIGESTS_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")


def _damage(target: Path, digests: _FileDigests) -> str | None:
    """Why the conversion in ``target`` cannot be used (a sentence naming the file), or None
    when each of its files holds the bytes that were written."""
    record_path = target / DIGESTS_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"'{record_path}' is missing"
    except (OSError, ValueError) as exc:
        return f"'{record_path}' cannot be read ({first_line(exc)})"
    valid = isinstance(record, dict) and all(
        isinstance(record.get(name), dict)
        and isinstance(record[name].get("size"), int)
        and isinstance(record[name].get("sha256"), str)
        for name in (MODEL_FILE, WEIGHTS_FILE)
    )
    if not valid:
        return f"'{record_path}' does not record {MODEL_FILE} and {WEIGHTS_FILE}"
    for name in (MODEL_FILE, WEIGHTS_FILE):
        path = target / name
        written = record[name]
        try:
            size = path.stat().st_size
            if size != written["size"]:
                return f"'{path}' is {size} bytes; {written['size']} were written"
            if digests.of(path) != written["sha256"]:
                return f"'{path}' does not hold the bytes written (its SHA-256 differs)"
        except FileNotFoundError:
            return f"'{path}' is missing"
        except OSError as exc:
            return f"'{path}' cannot be read ({first_line(exc)})"
    return None


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
    """Trace the float32 decoder of ``folder`` and save it as OpenVINO IR in ``target``, with
    the digests of the files written (in a temporary folder first, renamed into place, so a
    reader never sees half a model). The caller holds the conversion's lock and ``target``
    does not exist."""
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
        _record(staging, (MODEL_FILE, WEIGHTS_FILE))
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Remove ``folder``: renamed aside first (one step, so no reader sees it half deleted;
    a process still reading its files keeps them until it closes them)."""
    aside = folder.with_name(f".{folder.name}-discarded-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _conversion_lock(target: Path) -> FileLock:
    """The lock, across processes, of the conversion in ``target`` and its compiled cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(target.with_name(f".{target.name}.lock"))


def _ensure_converted(
    openvino: Any, folder: Path, config: dict[str, Any], target: Path, digests: _FileDigests
) -> None:
    """Leave in ``target`` an intact conversion of ``folder``: the one there, else a new one
    (converted by one process at a time; the others wait for it)."""
    if target.is_dir() and _damage(target, digests) is None:
        return
    with _conversion_lock(target):
        # Looked at again under the lock: another process may have converted it meanwhile.
        problem = _damage(target, digests) if target.is_dir() else None
        if target.is_dir() and problem is None:
            return
        if problem is not None:
            logger.warning("%s; converting the checkpoint to OpenVINO again", problem)
        # Folders left by a conversion that was killed (only the lock's holder writes them).
        for left in target.parent.glob(f".{target.name}-*"):
            shutil.rmtree(left, ignore_errors=True)
        _discard(target)
        _convert(openvino, folder, config, target)
        # The traced decoder's memory is free but, in holes of the C heap, still resident
        # (about 0.5 GB on the 0.6B shape) unless handed back.
        release_free_memory()


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


_loaded: SharedCache[tuple[str, ...], LoadedModel] = SharedCache()


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
    digests = _FileDigests(cache)
    target = cache / conversion_key(folder, digests)
    properties = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
        # The compiled model is cached without its weights (they stay in the converted
        # model's file): a second copy on disk would make no load faster.
        "CACHE_MODE": "OPTIMIZE_SIZE",
        **options.config,
        **_FIXED_PROPERTIES,
        # Inside the conversion's folder, so that it goes with a damaged conversion.
        "CACHE_DIR": str(target / "compiled"),
    }
    key = (str(target), kind, repr(sorted(properties.items())))

    def compile_model() -> LoadedModel:
        checkpoint = open_folder(folder, kind)
        settings = DecoderConfig.from_config(checkpoint.config)
        if settings is None:
            raise _not_covered(folder)
        _ensure_converted(openvino, folder, checkpoint.config, target, digests)
        digests.save()
        path = target / MODEL_FILE
        try:
            # Under the conversion's lock: OpenVINO rewrites a compiled-model file in its
            # CACHE_DIR in place and maps it to read it, so a second process compiling at
            # the same moment could truncate the file under the first one's mapping.
            # OpenVINO maps the weights file and packs most weights into copies of its own;
            # the file's pages it read would otherwise stay resident beside them.
            with _conversion_lock(target), dropped_pages(target / WEIGHTS_FILE):
                compiled = openvino.Core().compile_model(str(path), "CPU", properties)
        except RuntimeError as exc:
            reason = first_line(exc)
            raise ValueError(
                f"OpenVINO could not compile '{path}' with config={dict(options.config)!r}: "
                f"{reason[:300]}"
            ) from exc
        cpu, decoder = torch.device("cpu"), OpenVINODecoder(compiled, settings)
        return LoadedModel.of(checkpoint, cpu, torch.float32, decoder)

    loaded = _loaded.get_or_build(key, compile_model)
    digests.save()
    return loaded


def open_model(
    model: str | os.PathLike[str], kind: ModelKind, options: OpenVINOOptions, *, hub: HubOptions
) -> LocalModel:
    """The checkpoint compiled by OpenVINO, run by the torch runner of the transformers
    backend; its compiled decoder keeps no key/value cache, so nothing is shared between a
    query's documents."""
    return LocalModel(load_openvino_model(model, kind, options, hub=hub), options, False)
