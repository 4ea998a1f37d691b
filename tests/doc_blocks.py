"""The code blocks of the Markdown documentation, and a program that runs them.

``code_blocks(path)`` finds every fenced block whose language is Python or a shell. Run as a
program (``python tests/doc_blocks.py BLOCKS.json``) by test_docs_examples.py, it runs the
blocks of one file in order, as a reader pasting them would: the Python blocks in one
namespace (top-level ``await`` allowed), each shell block in ``bash -euo pipefail``. It stops
at the first block that raises, exits non-zero or makes qwen3-rag warn, naming its line.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import inspect
import json
import linecache
import os
import re
import subprocess
import sys
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.*?)\s*-->\s*$")
LANGUAGES = {
    "python": "python",
    "py": "python",
    "bash": "bash",
    "sh": "bash",
    "shell": "bash",
    "console": "bash",
}
OUR_PACKAGES = ("qwen3_core", "langchain_qwen3", "llamaindex_qwen3")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: str
    line: int  # of the block's first line of code, 1-based
    language: str  # "python" or "bash"
    code: str
    not_run: str | None  # the reason given by a <!-- not run: ... --> line just above it

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def code_blocks(path: Path, root: Path) -> list[Block]:
    """The Python and shell blocks of ``path``, in order; other fences (output, config
    files) are not code to run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, start = [], 0
    while start < len(lines):
        fence = FENCE.match(lines[start])
        if fence is None:
            start += 1
            continue
        end = start + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{start + 1}: a code block that is never closed")
        words = fence["info"].split()
        language = LANGUAGES.get(words[0].lower()) if words else None
        if language is not None:
            indent = fence["indent"]  # a block inside a list item is indented with it
            code = "\n".join(line.removeprefix(indent) for line in lines[start + 1 : end])
            above = start - 1
            while above >= 0 and not lines[above].strip():
                above -= 1
            marker = NOT_RUN.match(lines[above]) if above >= 0 else None
            blocks.append(
                Block(
                    path=path.relative_to(root).as_posix(),
                    line=start + 2,
                    language=language,
                    code=code + "\n",
                    not_run=marker["reason"] if marker else None,
                )
            )
        start = end + 1
    return blocks


class BlockFailed(Exception):
    pass


def _package_folders() -> tuple[str, ...]:
    """Where our packages are (found without importing them)."""
    folders = []
    for name in OUR_PACKAGES:
        spec = importlib.util.find_spec(name)
        folders += list(spec.submodule_search_locations or []) if spec else []
    return tuple(os.path.join(folder, "") for folder in folders)


def _ours(filename: str, block: Block) -> bool:
    """A warning raised in our packages, or one that its stack level points at the block
    itself (a library saying that the documented call is wrong)."""
    return filename == block.path or filename.startswith(_package_folders())


def run_python(block: Block, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
    # Line numbers of tracebacks are the Markdown file's, with its lines shown.
    source = "\n" * (block.line - 1) + block.code
    linecache.cache[block.path] = (len(source), None, source.splitlines(True), block.path)
    code = compile(source, block.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = eval(code, namespace)
            if inspect.iscoroutine(result):  # the block awaits at top level
                loop.run_until_complete(result)
        except BaseException as exc:
            traceback.print_exc()
            raise BlockFailed(f"{block.where}: {type(exc).__name__}: {exc}") from exc
    for warning in caught:
        print(
            warnings.formatwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            ),
            file=sys.stderr,
            end="",
        )
    ours = [w for w in caught if _ours(w.filename, block)]
    if ours:
        raise BlockFailed(f"{block.where}: warned: {ours[0].category.__name__}: {ours[0].message}")


def run_bash(block: Block) -> None:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], timeout=600)
    if result.returncode:
        raise BlockFailed(f"{block.where}: the shell block exited with {result.returncode}")


def main(blocks_file: str) -> int:
    blocks = [Block(**fields) for fields in json.loads(Path(blocks_file).read_text())]
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    loop = asyncio.new_event_loop()
    try:
        for block in blocks:
            print(f"--- {block.where} ({block.language})", flush=True)
            if block.language == "bash":
                run_bash(block)
            else:
                run_python(block, namespace, loop)
            sys.stdout.flush()
    except BlockFailed as failure:
        print(f"FAILED {failure}", flush=True)
        return 1
    finally:
        loop.close()
    return 0


def write_blocks(blocks: list[Block], path: Path) -> None:
    path.write_text(json.dumps([asdict(block) for block in blocks]))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1]))
