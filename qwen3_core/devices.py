"""Internal: device and dtype defaults, read from the device itself.

- ``device=None``: CUDA when there is a GPU, else Apple's MPS where available, else CPU.
- ``dtype=None``: bfloat16 on GPUs with native bf16 (compute capability 8.0 and up), float16
  on older ones (T4, V100), float32 on MPS and CPU (CPUs without bf16 units run bfloat16
  several times slower; MPS runs float32 everywhere it exists).
- The CUDA batch budget follows the memory left free once the model is loaded.
- ``share_prefix=None`` (reranker): the measured choice for the device type,
  ``SHARE_PREFIX_DEFAULTS``.
"""

from __future__ import annotations

import torch

from qwen3_core.backend_options import dtype_name

# The supported dtypes by their canonical names (``qwen3_core.backend_options.dtype_name``
# reads every spelling).
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device(*, cuda: bool, mps: bool) -> torch.device:
    """The device ``device=None`` picks, given what this machine has."""
    return torch.device("cuda" if cuda else "mps" if mps else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda if available, else mps if available, else cpu; anything else is
    checked to exist."""
    if device is None:
        return default_device(cuda=torch.cuda.is_available(), mps=_mps_available())
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but CUDA is not available here")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif resolved.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {device!r} was asked for, but MPS is not available here")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    return resolved


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def default_dtype(device_type: str, capability: tuple[int, int] | None = None) -> torch.dtype:
    """The dtype ``dtype=None`` picks: on CUDA bfloat16 from compute capability 8.0 (native
    bf16), float16 below it; float32 on MPS and CPU."""
    if device_type == "cuda":
        return torch.bfloat16 if capability is not None and capability >= (8, 0) else torch.float16
    return torch.float32


# Whether the reranker runs the prompt head that one query's documents share once and reuses
# its key/value cache, by device type. CPU: on, measured faster (docs/performance.md). CUDA
# and MPS: on until measured otherwise; `make bench-gpu` (benchmarks/gpu_suite.py) measures it
# against whole prompts on CUDA and says which this entry should be.
SHARE_PREFIX_DEFAULTS: dict[str, bool] = {"cpu": True, "cuda": True, "mps": True}


def default_share_prefix(device_type: str) -> bool:
    """What ``share_prefix=None`` picks on a device of this type (``"cpu"``, ``"cuda"``,
    ``"mps"``): ``SHARE_PREFIX_DEFAULTS``, on where a type is not listed."""
    return SHARE_PREFIX_DEFAULTS.get(device_type, True)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` -> ``default_dtype`` for the device, read from it; anything else is checked."""
    if dtype is None:
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        return default_dtype(device.type, capability)
    name = dtype_name(dtype)
    assert name is not None
    resolved = _DTYPES[name]
    if resolved == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"this GPU ({device}) does not support bfloat16: use float16 or float32")
    return resolved


# Live activations per token in a decoder layer, in units of the element size: the residual,
# its norm, q/k/v, the attention output and the MLP's gate, up and activation; doubled for
# the allocator's slack and the layer being freed while the next one starts.
def activation_bytes_per_token(hidden_size: int, intermediate_size: int, element_size: int) -> int:
    """Bytes of activations a batch holds per padded token, at the peak of one layer."""
    return 2 * (6 * hidden_size + 3 * intermediate_size) * element_size


def cuda_batch_tokens(
    free_bytes: int,
    *,
    hidden_size: int,
    intermediate_size: int,
    element_size: int,
    share: float = 0.5,
    floor: int = 512,
    ceiling: int = 65536,
) -> int:
    """Padded tokens per batch on a GPU: ``share`` of the memory left free once the model is
    loaded, over each token's activations, kept within [floor, ceiling] (an out-of-memory
    batch is still halved and retried)."""
    per_token = activation_bytes_per_token(hidden_size, intermediate_size, element_size)
    return max(floor, min(ceiling, int(free_bytes * share) // per_token))
