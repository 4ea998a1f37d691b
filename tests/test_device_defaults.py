"""The device, dtype and batch defaults, chosen from the device's own facts (passed in here,
so every kind of machine is covered on any machine; tests/test_gpu.py checks them on a real
GPU)."""

from __future__ import annotations

import pytest
import torch

from qwen3_core.devices import (
    activation_bytes_per_token,
    cuda_batch_tokens,
    default_device,
    default_dtype,
    default_share_prefix,
    resolve_device,
)
from qwen3_core.testing import SHAPES, ModelPaths

GIB = 1 << 30


@pytest.mark.parametrize(
    ("capability", "dtype"),
    [
        ((7, 0), torch.float16),  # V100
        ((7, 5), torch.float16),  # T4
        ((8, 0), torch.bfloat16),  # A100
        ((8, 9), torch.bfloat16),  # L4
        ((9, 0), torch.bfloat16),  # H100, H200
    ],
)
def test_cuda_dtype_follows_native_bfloat16(
    capability: tuple[int, int], dtype: torch.dtype
) -> None:
    assert default_dtype("cuda", capability) == dtype


def test_cpu_and_mps_default_to_float32() -> None:
    assert default_dtype("cpu") == torch.float32
    assert default_dtype("mps") == torch.float32


def test_default_device_order() -> None:
    assert default_device(cuda=True, mps=True).type == "cuda"
    assert default_device(cuda=False, mps=True).type == "mps"
    assert default_device(cuda=False, mps=False).type == "cpu"


@pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="a machine without GPU"
)
def test_this_machine_defaults_to_cpu() -> None:
    assert resolve_device(None).type == "cpu"


def test_share_prefix_default_is_per_device_type(test_models: ModelPaths) -> None:
    """None picks the measured choice for the device; an explicit value is kept."""
    from qwen3_core import Qwen3Reranker, TransformersOptions

    assert TransformersOptions().share_prefix is None
    assert default_share_prefix("cpu") and default_share_prefix("cuda")
    default = Qwen3Reranker(test_models.reranker, backend=TransformersOptions(device="cpu"))
    assert default.options.share_prefix is True  # the engine's options show what it runs
    off = Qwen3Reranker(
        test_models.reranker, backend=TransformersOptions(device="cpu", share_prefix=False)
    )
    assert off.options.share_prefix is False


def _budget(shape: str, free_gib: float, element_size: int = 2) -> int:
    dims = SHAPES[shape]
    return cuda_batch_tokens(
        int(free_gib * GIB),
        hidden_size=dims.hidden_size,
        intermediate_size=dims.intermediate_size,
        element_size=element_size,
    )


def test_batch_budget_follows_free_memory_and_model_size() -> None:
    # 8B in bfloat16 (about 16 GB) on a 24 GB card leaves about 6 GB.
    small_card = _budget("8b", 6)
    per_token = activation_bytes_per_token(4096, 12288, 2)
    assert small_card * per_token <= 0.5 * 6 * GIB  # half the free memory at most
    assert 512 <= small_card < 65536  # less than the old fixed budget, which ran out of memory
    # The same card with the 0.6B model, and a large card, allow more, up to the ceiling.
    assert _budget("0.6b", 20) > small_card
    assert _budget("0.6b", 120) == 65536
    # Almost no memory left: the floor (an out-of-memory batch is still halved and retried).
    assert _budget("8b", 0.01) == 512
    # float32 activations take twice the room.
    assert _budget("4b", 6, element_size=4) < _budget("4b", 6, element_size=2)
