"""Internal (import its public names from ``qwen3_core``): Each backend's own settings, as one
typed object passed as ``backend=``.

A setting exists only on the backend that uses it, so a wrong combination cannot be written:
``TransformersOptions(device="cuda")``, ``OpenVINOOptions(cache_folder=...)``,
``VllmOptions(tensor_parallel_size=2)``, ``ServerOptions(base_url="http://gpu-1:8000")``.
The options are checked when they are made, before any model is opened, and no torch is
imported here: a server client needs none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from qwen3_core.redaction import redact, url_secrets
from qwen3_core.validation import check_int, check_optional_int

if TYPE_CHECKING:
    import torch

BackendName = Literal["transformers", "openvino", "vllm", "server"]
Quantization = Literal["int8"]
"""``int8``: the decoder layers' linear weights in int8 (CPU only)."""
Decoder = Literal["qwen3-rag", "transformers"]
"""Which decoder runs a local model: qwen3-rag's own (CPU) or transformers' ``Qwen3Model``."""
CpuLinear = Literal["onednn", "torch"]
"""The float32 CPU linear kernel: oneDNN's packed GEMM or torch's ``nn.Linear``."""
CpuThreads = Literal["adaptive", "torch"]
"""torch's CPU thread count per forward pass: lowered while other processes keep cores busy,
or always torch's own."""
Int8Kernel = Literal["fbgemm", "onednn"]
"""The int8 CPU linear kernel."""

_DEVICE = re.compile(r"(cpu|mps|cuda)(:\d+)?")
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}

# Settings the engine owns: given in model_kwargs they would contradict it.
_OWNED_MODEL_KWARGS = {
    "dtype": "TransformersOptions(dtype=...)",
    "torch_dtype": "TransformersOptions(dtype=...)",
    "device_map": "TransformersOptions(device=...)",
    "trust_remote_code": "nothing: remote code is never run",
    "num_labels": "nothing: the checkpoint says it",
    "output_loading_info": "nothing: the engine checks the loading report itself",
    "revision": "the engine's revision=",
    "token": "the engine's token=",
    "cache_dir": "the engine's cache_dir=",
    "local_files_only": "the engine's local_files_only=",
}
# vLLM arguments the engine sets from the checkpoint and the other options.
_OWNED_ENGINE_ARGS = {
    "model": "the engine's model argument",
    "tokenizer": "nothing: the checkpoint's own tokenizer is used",
    "runner": "nothing: the engine runs vLLM's pooling runner",
    "dtype": "VllmOptions(dtype=...)",
    "tensor_parallel_size": "VllmOptions(tensor_parallel_size=...)",
    "gpu_memory_utilization": "VllmOptions(gpu_memory_utilization=...)",
    "max_model_len": "VllmOptions(max_model_len=...)",
    "enable_prefix_caching": "VllmOptions(enable_prefix_caching=...)",
    "trust_remote_code": "nothing: remote code is never run",
    "hf_overrides": "nothing: the engine derives them from the checkpoint",
}


def device_name(device: Any) -> str | None:
    """``"cuda:0"`` for ``"cuda:0"`` or ``torch.device("cuda:0")``; None stays None. Only the
    spelling is checked here; whether the device exists is checked when the model opens."""
    if device is None:
        return None
    name = str(device) if type(device).__name__ == "device" else device
    if not isinstance(name, str) or not _DEVICE.fullmatch(name.strip().lower()):
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return name.strip().lower()


def dtype_name(dtype: Any) -> str | None:
    """``"bfloat16"`` for ``"bfloat16"``, ``"bf16"`` or ``torch.bfloat16``; None stays None."""
    if dtype is None:
        return None
    name = str(dtype).lower().removeprefix("torch.")
    if not isinstance(dtype, str) and type(dtype).__name__ != "dtype":
        name = ""
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use 'float32', 'bfloat16' or 'float16'")
    return _DTYPES[name]


def _checked_kwargs(
    name: str, value: Mapping[str, Any] | None, owned: Mapping[str, str]
) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    for key in value:
        if key in owned:
            raise ValueError(f"{name} may not set {key!r}: use {owned[key]}")
    return dict(value)


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        shown = ", ".join(repr(choice) for choice in allowed)
        raise ValueError(f"unknown {name} {value!r}: use None, {shown}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TransformersOptions:
    """Run the model in this process with transformers and torch (the default backend).

    An engine's ``options`` show what runs: the device, dtype, decoder and kernel it
    resolved (``cpu_linear`` only on CPU in float32, ``int8_kernel`` only with int8), and a
    reranker's ``share_prefix``.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (or a ``torch.device``);
            None: CUDA when available, else MPS, else CPU.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (or a ``torch.dtype``); None:
            bfloat16 on GPUs with bf16 units, float16 on older GPUs, float32 on MPS and CPU.
        quantization: ``"int8"`` runs the decoder's linear layers in int8 on CPU (float32
            weights only): faster, not exact. None (the default) keeps the model exact.
        max_batch_tokens: Padded tokens per forward pass; None: the default for the device
            (on a GPU, from the memory left free once the model is loaded).
        show_progress: A progress bar over batches; None: only for large inputs on a
            terminal.
        share_prefix: Reranker only: the tokens one query's documents share run once and
            their key/value cache is reused (scores are unchanged); False scores whole
            prompts. None: the faster of the two as measured for the device type
            (``qwen3_core.devices.SHARE_PREFIX_DEFAULTS``; on for CPU and CUDA).
        model_kwargs: Further arguments for transformers' ``from_pretrained`` (for example
            ``attn_implementation``); the settings above and the hub options cannot be given
            here. Only transformers' decoder reads them, so giving any selects it.
        decoder: ``"qwen3-rag"``: the decoder built straight from the files (CPU only; no
            transformers import, no second copy of the weights); ``"transformers"``:
            transformers' ``Qwen3Model``. None: qwen3-rag's on CPU where it covers the
            checkpoint and no ``model_kwargs`` are given, else transformers'.
        cpu_linear: The float32 CPU linear kernel: ``"onednn"`` (oneDNN's packed GEMM) or
            ``"torch"`` (``nn.Linear``). None: oneDNN's where this torch has it and it passes
            its check against torch's kernel, else torch's.
        int8_kernel: With ``quantization="int8"``: ``"fbgemm"`` or ``"onednn"``. None:
            oneDNN's where the CPU has AMX int8 tiles (and it passes its check against
            fbgemm's), else fbgemm's.
        cpu_threads: On CPU, torch's thread count per forward pass: ``"adaptive"`` runs
            each pass with torch's count (``torch.set_num_threads``) less the cores other
            processes kept busy since the last pass, at least one (Linux; elsewhere as
            ``"torch"``); ``"torch"`` always runs torch's count. Results do not depend on
            it. None: ``"adaptive"`` on CPU.

    Raises:
        ValueError: A setting is out of range or misspelt (the device is only checked to
            exist when the model opens).
        TypeError: A setting has the wrong type.
    """

    name: ClassVar[BackendName] = "transformers"
    device: str | torch.device | None = None
    dtype: str | torch.dtype | None = None
    quantization: Quantization | None = None
    max_batch_tokens: int | None = None
    show_progress: bool | None = None
    share_prefix: bool | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    decoder: Decoder | None = None
    cpu_linear: CpuLinear | None = None
    int8_kernel: Int8Kernel | None = None
    cpu_threads: CpuThreads | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", device_name(self.device))
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.quantization not in (None, "int8"):
            raise ValueError(f"unknown quantization {self.quantization!r}: use None or 'int8'")
        _check_choice("decoder", self.decoder, ("qwen3-rag", "transformers"))
        _check_choice("cpu_linear", self.cpu_linear, ("onednn", "torch"))
        _check_choice("int8_kernel", self.int8_kernel, ("fbgemm", "onednn"))
        _check_choice("cpu_threads", self.cpu_threads, ("adaptive", "torch"))
        check_optional_int("max_batch_tokens", self.max_batch_tokens, minimum=1)
        if self.show_progress is not None:
            _check_bool("show_progress", self.show_progress)
        if self.share_prefix is not None:
            _check_bool("share_prefix", self.share_prefix)
        kwargs = _checked_kwargs("model_kwargs", self.model_kwargs, _OWNED_MODEL_KWARGS)
        object.__setattr__(self, "model_kwargs", kwargs)
        self._check_paths()

    def _check_paths(self) -> None:
        """Refuse settings of a path that the other settings rule out (checked again once the
        device and dtype are resolved)."""
        on_cpu = self.device is None or str(self.device).partition(":")[0] == "cpu"
        if self.decoder == "qwen3-rag":
            if self.model_kwargs:
                raise ValueError(
                    "model_kwargs are arguments of transformers' from_pretrained: they need "
                    "decoder='transformers' (or decoder unset)"
                )
            if not on_cpu:
                raise ValueError(
                    f"decoder='qwen3-rag' runs on CPU only, not on {self.device!r}: pass "
                    "device='cpu' or leave decoder unset"
                )
        if self.int8_kernel is not None and self.quantization is None:
            raise ValueError(
                f"int8_kernel={self.int8_kernel!r} applies with quantization='int8' only"
            )
        if self.cpu_threads is not None and not on_cpu:
            raise ValueError(
                f"cpu_threads={self.cpu_threads!r} applies on CPU only, not to "
                f"device={self.device!r}"
            )
        if self.cpu_linear is not None:
            if self.quantization is not None:
                raise ValueError(
                    "cpu_linear is the float32 kernel: with quantization='int8' choose "
                    "int8_kernel instead"
                )
            if not on_cpu or self.dtype not in (None, "float32"):
                raise ValueError(
                    f"cpu_linear={self.cpu_linear!r} applies on CPU in float32 only, not to "
                    f"device={self.device!r}, dtype={self.dtype!r}"
                )


# OpenVINO properties the engine sets: given in config they would contradict it.
_OWNED_OPENVINO_CONFIG = {
    "INFERENCE_PRECISION_HINT": "nothing: float32 keeps the scores exact (bfloat16 would not)",
    "CACHE_DIR": "OpenVINOOptions(cache_folder=...)",
}


@dataclass(frozen=True, kw_only=True)
class OpenVINOOptions:
    """Run the model in this process on OpenVINO's CPU runtime, in float32
    (``pip install -e ".[openvino]"`` in a clone). The same decoder as the transformers backend on
    CPU, converted to OpenVINO once per checkpoint and kept on disk; its scores match that
    backend's within float32 rounding. The faster of the two depends on the CPU:
    docs/backends.md says how to choose.

    Args:
        max_batch_tokens: Padded tokens per forward pass; None: 512, as on the transformers
            backend's CPU.
        show_progress: A progress bar over batches; None: only for large inputs on a
            terminal.
        cache_folder: Where the converted model and OpenVINO's compiled graph are kept; the
            first load of a checkpoint converts it (20-30 s for the 0.6B models), later
            loads read it. None: ``qwen3-rag/openvino`` in the user's cache folder
            (``$XDG_CACHE_HOME``, else ``~/.cache``).
        config: Further properties for OpenVINO's CPU plugin (for example
            ``{"INFERENCE_NUM_THREADS": 4}``), except the precision hint (always f32) and the
            cache folder. Threads default to torch's (``torch.get_num_threads()``).

    Raises:
        ValueError: A setting is out of range, or config sets the precision or cache.
        TypeError: A setting has the wrong type.
    """

    name: ClassVar[BackendName] = "openvino"
    max_batch_tokens: int | None = None
    show_progress: bool | None = None
    cache_folder: str | os.PathLike[str] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_optional_int("max_batch_tokens", self.max_batch_tokens, minimum=1)
        if self.show_progress is not None:
            _check_bool("show_progress", self.show_progress)
        folder = self.cache_folder
        if folder is not None:
            if not isinstance(folder, (str, os.PathLike)):
                raise TypeError(f"cache_folder must be a path, got {type(folder).__name__}")
            object.__setattr__(self, "cache_folder", os.fspath(folder))
        config = _checked_kwargs("config", self.config, _OWNED_OPENVINO_CONFIG)
        object.__setattr__(self, "config", config)


@dataclass(frozen=True, kw_only=True)
class VllmOptions:
    """Run the model on vLLM in this process (``pip install -e ".[vllm]"`` in a clone).

    Args:
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; None: as for transformers.
        tensor_parallel_size: GPUs one model is split over (choose them with
            ``CUDA_VISIBLE_DEVICES``).
        gpu_memory_utilization: Share of each GPU's memory vLLM may take.
        max_model_len: Longest prompt vLLM reserves room for; None: the engine's
            ``max_length``.
        enable_prefix_caching: Reuse the cached blocks of prompt heads that documents of one
            query share.
        engine_args: Further ``vllm.LLM`` arguments (``enforce_eager``, ``swap_space``,
            ...); the settings above, the model and its overrides cannot be given here.

    Raises:
        ValueError: A setting is out of range or misspelt.
        TypeError: A setting has the wrong type.
    """

    name: ClassVar[BackendName] = "vllm"
    dtype: str | torch.dtype | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.8
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    engine_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        check_int("tensor_parallel_size", self.tensor_parallel_size, minimum=1)
        utilization = self.gpu_memory_utilization
        if (
            isinstance(utilization, bool)
            or not isinstance(utilization, (int, float))
            or not 0 < utilization <= 1
        ):
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {utilization!r}")
        check_optional_int("max_model_len", self.max_model_len, minimum=1)
        _check_bool("enable_prefix_caching", self.enable_prefix_caching)
        engine_args = _checked_kwargs("engine_args", self.engine_args, _OWNED_ENGINE_ARGS)
        object.__setattr__(self, "engine_args", engine_args)


@dataclass(frozen=True, kw_only=True, repr=False)
class ServerOptions:
    """Send token ids to vLLM model servers (``vllm serve``; see docs/serving.md). Needs no
    torch: the client only tokenises and talks HTTP.

    Credentials are never shown: the repr, the adapters' dumps, errors, warnings and log
    lines show a URL's user information (``http://user:password@host``, sent as basic auth)
    as ``***`` and leave the API key out. A pickle keeps both, so that worker processes can
    call the servers: treat a pickled engine, adapter or options object as a secret.

    Args:
        base_url: One server address (``"http://gpu-1:8000"``) or a list, used round-robin
            (a server that fails is skipped for a while).
        api_key: Sent as a bearer token (the servers' ``--api-key``).
        timeout: Seconds one request may take in all, its retries and the waits between them
            included (a call of many inputs sends several requests, up to
            ``max_concurrency`` at once).
        max_concurrency: Requests in flight at once, over all servers.
        max_retries: Further tries of a request that failed on a connection error, a
            timeout or a 429/5xx answer, as long as ``timeout`` leaves time for them.

    Raises:
        ValueError: No address, an address that is not http(s), or a setting out of range.
        TypeError: A setting has the wrong type.
    """

    name: ClassVar[BackendName] = "server"
    base_url: str | Sequence[str]
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_concurrency: int = 8
    max_retries: int = 5

    def __post_init__(self) -> None:
        urls = check_base_urls(self.base_url)
        object.__setattr__(self, "base_url", urls[0] if len(urls) == 1 else tuple(urls))
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise TypeError(f"api_key must be a str, got {type(self.api_key).__name__}")
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        check_int("max_concurrency", self.max_concurrency, minimum=1)
        check_int("max_retries", self.max_retries, minimum=0)

    def __repr__(self) -> str:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        values["base_url"] = self.shown_base_url
        shown = ", ".join(f"{name}={value!r}" for name, value in values.items())
        return f"{type(self).__name__}({shown})"

    @property
    def urls(self) -> list[str]:
        """The server addresses, as a list, user information shown as ``***``."""
        addresses = [self.base_url] if isinstance(self.base_url, str) else self.base_url
        return [redact(url) for url in addresses]

    @property
    def shown_base_url(self) -> str | tuple[str, ...]:
        """``base_url`` with user information shown as ``***``: what reprs and dumps show."""
        urls = self.urls
        return urls[0] if isinstance(self.base_url, str) else tuple(urls)


BackendOptions = TransformersOptions | OpenVINOOptions | VllmOptions | ServerOptions
BackendChoice = BackendName | BackendOptions
"""What ``backend=`` takes: a backend's name (with its default options) or its options."""
OptionsClass = (
    type[TransformersOptions] | type[OpenVINOOptions] | type[VllmOptions] | type[ServerOptions]
)

_OPTIONS: dict[str, OptionsClass] = {
    "transformers": TransformersOptions,
    "openvino": OpenVINOOptions,
    "vllm": VllmOptions,
    "server": ServerOptions,
}
BACKENDS: tuple[str, ...] = tuple(_OPTIONS)


def options_class(name: str) -> OptionsClass:
    """The options class of the backend called ``name``."""
    if name not in _OPTIONS:
        raise ValueError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    return _OPTIONS[name]


def backend_options(backend: Any) -> BackendOptions:
    """``backend=`` as options: a name gets that backend's defaults.

    Raises:
        ValueError: An unknown name, or ``"server"`` (which needs an address).
        TypeError: Neither a name nor options.
    """
    if isinstance(backend, (TransformersOptions, OpenVINOOptions, VllmOptions, ServerOptions)):
        return backend
    if not isinstance(backend, str):
        raise TypeError(
            "backend must be 'transformers', 'openvino', 'vllm', 'server' or "
            "TransformersOptions / OpenVINOOptions / VllmOptions / ServerOptions, got "
            f"{type(backend).__name__}"
        )
    cls = options_class(backend)
    if cls is ServerOptions:
        raise ValueError(
            "backend='server' needs the servers' address: pass "
            "backend=ServerOptions(base_url='http://host:8000')"
        )
    return cls()  # type: ignore[call-arg]


def setting_names(options: type[Any]) -> list[str]:
    """The settings an options class takes."""
    return [f.name for f in fields(options)]


def without_progress_bars(options: BackendOptions) -> BackendOptions:
    """``options`` with ``show_progress=False`` where the backend draws progress bars and the
    options leave it to the default (a caller that shows its own progress, or whose output is
    a log); an explicit setting is kept."""
    names = {f.name for f in fields(options)}
    if "show_progress" in names and getattr(options, "show_progress", None) is None:
        return replace(options, show_progress=False)  # type: ignore[arg-type]
    return options


def check_base_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """The base URLs as a list, each an http(s) URL without a trailing slash."""
    import httpx  # here: its import costs 0.2 s of every local model's cold start

    if base_url is None:
        raise ValueError("backend='server' needs base_url: the address of a vLLM server")
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls:
        raise ValueError("base_url is an empty list: give at least one server address")
    checked: list[str] = []
    for index, url in enumerate(urls):
        if not isinstance(url, str):
            raise TypeError(f"base_url[{index}] must be a str, got {type(url).__name__}")
        hide = url_secrets(url)
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(redact(f"base_url {url!r} is not a URL: {exc}", hide)) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(redact(f"base_url {url!r} must be an http:// or https:// address"))
        checked.append(url.rstrip("/"))
    return checked
