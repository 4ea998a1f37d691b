"""backend="openvino" holds one copy of the weights: OpenVINO packs most of them into copies
of its own as it compiles, and the pages of the converted weights file it read to do so are
handed back (``qwen3_core.backends.mapped_pages``), on real mappings read back from
``/proc/self/smaps``."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from qwen3_core import Qwen3Embedder
from qwen3_core.backend_options import OpenVINOOptions
from qwen3_core.backends.mapped_pages import _madvise, drop_pages
from qwen3_core.backends.openvino import MODEL_FILE, WEIGHTS_FILE
from qwen3_core.testing import ModelPaths
from tests.options import CPU
from tests.resident_pages import resident_bytes

if _madvise() is None:
    pytest.skip("needs Linux's madvise and /proc/self/smaps", allow_module_level=True)


def _identity(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino


def test_the_weights_file_read_to_compile_is_not_kept_resident(
    test_models: ModelPaths, tmp_path: Path
) -> None:
    engine = Qwen3Embedder(test_models.embedding, backend=OpenVINOOptions(cache_folder=tmp_path))
    (weights,) = [p / WEIGHTS_FILE for p in tmp_path.iterdir() if (p / MODEL_FILE).is_file()]
    # OpenVINO keeps the file mapped (it reads some weights from it as it runs) ...
    assert f" {os.stat(weights).st_ino} " in Path("/proc/self/maps").read_text()
    # ... but of the pages it read while packing the rest, none stays resident: before they
    # were handed back, every page of the file was.
    assert resident_bytes(weights) < 0.05 * weights.stat().st_size
    texts = ["What is the capital of China?", "a longer text " * 40]
    reference = Qwen3Embedder(test_models.embedding, backend=CPU).embed_documents(texts)
    np.testing.assert_allclose(engine.embed_documents(texts), reference, atol=1e-4, rtol=0)
    # What it reads again as it runs comes back, from the file: still less than all of it.
    assert resident_bytes(weights) < weights.stat().st_size


def test_dropping_a_shared_read_only_mapping_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    data = np.random.default_rng(0).integers(0, 256, 4 << 20, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    madvise = _madvise()
    assert madvise is not None
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        assert view[:] == data  # every page read: resident
        assert resident_bytes(path) == len(data)
        assert drop_pages(_identity(path), madvise) == 1
        assert resident_bytes(path) == 0
        assert view[:] == data  # read again, from the file
        assert resident_bytes(path) == len(data)


def test_a_private_mapping_is_left_alone(tmp_path: Path) -> None:
    """A private mapping may hold pages written in this process (not in the file): handing
    them back would lose those bytes, so such mappings are never touched."""
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(1 << 20))
    madvise = _madvise()
    assert madvise is not None
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) as view:
        view[:4] = b"kept"
        assert drop_pages(_identity(path), madvise) == 0
        assert view[:4] == b"kept"
        assert resident_bytes(path) > 0
