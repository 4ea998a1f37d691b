"""Internal: a checkpoint's safetensors tensors, read one at a time with plain file reads.

The loader streams each decoder weight into a reused buffer, packs it for its kernel and moves
on, so nothing of the file stays beside the packed copy. The token embedding table is read a
row at a time, as rows are first looked up (``RowsOnDemand``), so only the rows of tokens
actually seen become resident. Nothing of the files stays mapped: a mapping's pages follow the
file when it is rewritten in place, and reading one past the end of a truncated file kills
the process with SIGBUS.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsIndex

import torch

from qwen3_core.decoder import TokenEmbedding
from qwen3_core.errors import ModelFilesChangedError, ModelKindError
from qwen3_core.safetensors_index import SINGLE_FILE, weight_files

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
        entries: dict[str, TensorEntry] = {}
        for name in weight_files(folder) or [SINGLE_FILE]:
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

    def rows_on_demand(self, name: str) -> RowsOnDemand:
        """A 2-d tensor whose rows are read from the file as they are first asked for."""
        return RowsOnDemand(self.entries[name], name)


class RowsOnDemand:
    """A 2-d tensor of a safetensors file (the token embedding table) in the process's own
    memory, each row read from the file the first time it is asked for (``fill``).

    Its memory is reserved untouched, so only the rows read ever become resident (a few MiB
    of the 0.6B model's 593 MiB table for ordinary text). The file stays open, so the rows
    still to be read come from the file the model was loaded from even where that is
    replaced or deleted; a file rewritten in place (its size or modification time changed)
    is refused by name when a row is next needed from it, and rows already read are kept.
    """

    def __init__(self, entry: TensorEntry, name: str) -> None:
        self.path, self.name = entry.path, name
        rows = entry.shape[0]
        self._row_bytes = entry.nbytes // rows if rows else 0
        self._offset = entry.offset
        self._handle = entry.path.open("rb", buffering=0)
        weakref.finalize(self, self._handle.close)  # closed with the model, without a warning
        self._stamp = _stamp(self._handle.fileno())
        # Anonymous memory is backed by pages only where written. Private, and never in huge
        # pages: with transparent huge pages always on, each row read would take 2 MiB.
        if hasattr(mmap, "MAP_ANONYMOUS"):
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
            self._region = mmap.mmap(-1, max(entry.nbytes, 1), flags=flags)
        else:  # Windows: pages of the paging file, committed as they are written
            self._region = mmap.mmap(-1, max(entry.nbytes, 1))
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            self._region.madvise(mmap.MADV_NOHUGEPAGE)
        self.tensor = torch.frombuffer(
            self._region, dtype=entry.dtype, count=math.prod(entry.shape)
        ).view(entry.shape)
        self._read = torch.zeros(rows, dtype=torch.bool)
        self._lock = threading.Lock()

    def fill(self, ids: torch.Tensor) -> None:
        """Read the rows of ``ids`` (any shape) that have not been read yet.

        Raises:
            ModelFilesChangedError: A row is needed and the file was rewritten since the
                model was loaded from it.
        """
        wanted = torch.unique(ids)
        if len(wanted) and not 0 <= int(wanted[0]) <= int(wanted[-1]) < len(self._read):
            # As the lookup itself would fail; a negative id must not mark a row as read.
            raise IndexError(
                f"token ids {int(wanted[0])} to {int(wanted[-1])} lie outside the "
                f"{len(self._read)} rows of {self.name}"
            )
        if bool(self._read[wanted].all()):
            return
        with self._lock:  # one reader of the file at a time: they share its position
            missing = wanted[~self._read[wanted]].tolist()
            if not missing:
                return
            self._check()
            view = memoryview(self._region)
            start = 0
            while start < len(missing):  # runs of consecutive rows, one read each
                end = start + 1
                while end < len(missing) and missing[end] == missing[end - 1] + 1:
                    end += 1
                first, count = missing[start], end - start
                self._read_into(
                    view[first * self._row_bytes : (first + count) * self._row_bytes],
                    self._offset + first * self._row_bytes,
                )
                start = end
            self._check()  # a rewrite that began while the rows were read
            self._read[missing] = True

    def fill_all(self) -> None:
        """Read every row not read yet (for a copy of the whole table: a state dict)."""
        self.fill(torch.arange(self.tensor.shape[0]))

    def __deepcopy__(self, memo: dict[int, object]) -> RowsOnDemand:
        raise TypeError(self._not_copied())

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[object, ...]:
        raise TypeError(self._not_copied())

    def _not_copied(self) -> str:
        return (
            f"the token embedding table reads its rows from '{self.path}' as tokens are first "
            "looked up, so the model cannot be copied or pickled: load it again instead "
            "(its state_dict() holds every row)"
        )

    def _read_into(self, target: memoryview, offset: int) -> None:
        self._handle.seek(offset)
        done = 0
        while done < len(target):
            got = self._handle.readinto(target[done:])
            if not got:
                self._check()
                raise ModelKindError(f"'{self.path}' ends inside tensor '{self.name}'")
            done += got

    def _check(self) -> None:
        if _stamp(self._handle.fileno()) != self._stamp:
            raise ModelFilesChangedError(
                f"'{self.path}' was rewritten after the model was loaded from it, and rows of "
                f"its {self.name} that this input needs had not been read yet: load the model "
                "again to use the new weights"
            )


def _stamp(fd: int) -> tuple[int, int]:
    """The size and modification time of an open file: a rewrite in place changes them."""
    found = os.fstat(fd)
    return found.st_size, found.st_mtime_ns


class FileTokenEmbedding(TokenEmbedding):
    """The token embedding table as ``RowsOnDemand``: each row read from the file the first
    time a token is looked up."""

    def __init__(self, rows: RowsOnDemand, dtype: torch.dtype) -> None:
        super().__init__(rows.tensor, dtype)
        self.rows = rows

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.rows.fill(ids)
        return super().forward(ids)

    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        # A state dict is a copy of the whole table: never rows of zeros where none was read.
        self.rows.fill_all()
        super()._save_to_state_dict(destination, prefix, keep_vars)
