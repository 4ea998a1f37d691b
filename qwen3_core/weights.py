"""A checkpoint's safetensors tensors, read one at a time with plain file reads.

The loader streams each decoder weight into a reused buffer, packs it for its kernel and moves
on, so nothing of the file stays mapped beside the packed copy; only the token embedding table
is mapped (``mapped``), and only the rows that are looked up ever become resident.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from qwen3_core.variants import ModelKindError, read_json

_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
"""The safetensors dtypes the loader reads; a checkpoint with another is loaded by
transformers instead."""

_MAX_READ = 1 << 30


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies: its file, dtype, shape and byte range."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    """From the start of the file."""
    nbytes: int


def _header(path: Path) -> dict[str, TensorEntry] | None:
    """The tensors of one safetensors file, or None if one has a dtype the loader does not
    read."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError, struct.error) as exc:
        raise ModelKindError(f"'{path}' is not a readable safetensors file: {exc}") from exc
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info.get("dtype"))
        if dtype is None:
            return None
        shape = tuple(int(n) for n in info["shape"])
        start, end = (int(n) for n in info["data_offsets"])
        offset = 8 + length + start
        if end - start != math.prod(shape) * dtype.itemsize or offset + end - start > size:
            raise ModelKindError(f"'{path}': tensor '{name}' lies outside the file")
        entries[name] = TensorEntry(path, dtype, shape, offset, end - start)
    return entries


class SafetensorsFolder:
    """The tensors of a folder's ``model.safetensors`` (or its shards), by name."""

    def __init__(self, entries: dict[str, TensorEntry]) -> None:
        self.entries = entries

    @classmethod
    def open(cls, folder: Path) -> SafetensorsFolder | None:
        """The folder's tensors, or None when a file holds a dtype other than float32,
        bfloat16 or float16."""
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(read_json(index)["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        entries: dict[str, TensorEntry] = {}
        for name in files:
            found = _header(folder / name)
            if found is None:
                return None
            entries.update(found)
        return cls(entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str, buffer: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor, in its stored dtype: into ``buffer`` (as many elements, same dtype)
        if given, else into new memory."""
        entry = self.entries[name]
        out = torch.empty(entry.shape, dtype=entry.dtype) if buffer is None else buffer
        out = out.view(entry.shape)
        assert out.dtype == entry.dtype and out.is_contiguous()
        view = memoryview(out.view(torch.uint8).numpy().data).cast("B")
        with open(entry.path, "rb", buffering=0) as handle:
            handle.seek(entry.offset)
            done = 0
            while done < len(view):  # one read returns at most about 2 GiB
                got = handle.readinto(view[done : done + _MAX_READ])
                if not got:
                    raise ModelKindError(f"'{entry.path}' ends inside tensor '{name}'")
                done += got
        return out

    def mapped(self, name: str) -> torch.Tensor:
        """The tensor as a private (copy-on-write) mapping of its bytes: pages are read in, and
        count as resident, only where it is read."""
        entry = self.entries[name]
        if entry.offset % entry.dtype.itemsize:
            return self.read(name)  # an unaligned tensor cannot be viewed in place
        start = entry.offset - entry.offset % mmap.ALLOCATIONGRANULARITY
        with entry.path.open("rb") as handle:
            # Copy-on-write, so the tensor is writable for torch; nothing writes to it.
            region = mmap.mmap(
                handle.fileno(),
                entry.offset + entry.nbytes - start,
                access=mmap.ACCESS_COPY,
                offset=start,
            )
        flat = torch.frombuffer(
            region,
            dtype=entry.dtype,
            count=entry.nbytes // entry.dtype.itemsize,
            offset=entry.offset - start,
        )
        return flat.view(entry.shape)
