"""How much of a file this process holds resident through its mappings of it, read from
``/proc/self/smaps`` (Linux): the memory tests' one reader."""

from __future__ import annotations

import os


def resident_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of ``path``'s pages resident in this process's mappings of it."""
    stat = os.stat(path)
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header
                major, minor = (int(part, 16) for part in fields[3].split(":"))
                inside = int(fields[4]) == stat.st_ino and os.makedev(major, minor) == stat.st_dev
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total
