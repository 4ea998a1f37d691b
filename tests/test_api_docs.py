"""The API reference (docs/api/, built by ``make docs``) covers every public name: each name
in the ``__all__`` of a documented package has its own ``::: package.name`` block, or the
page renders the whole package. A name added to ``__all__`` without one fails here, with the
block to add. The public modules are the ones docs/architecture.md names, each with an
``__all__`` of names it binds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
PACKAGES = [
    "qwen3_core",
    "qwen3_core.batch",
    "qwen3_core.evaluation",
    "qwen3_core.serve",
    "qwen3_core.testing",
    "qwen3_core.hub",
    "qwen3_core.variants",
    "langchain_qwen3",
    "llamaindex_qwen3",
]


def _source(package: str) -> Path:
    path = ROOT / package.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def public_names(package: str) -> list[str]:
    """``__all__`` read from the source: importing would pull torch and the frameworks."""
    path = _source(package)
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert node.value is not None
            return [str(name) for name in ast.literal_eval(node.value)]
    raise AssertionError(f"{path} has no __all__")


def rendered_blocks() -> dict[str, bool]:
    """Each ``:::`` identifier in docs/api, and whether the block renders its members."""
    blocks: dict[str, bool] = {}
    for page in sorted(API.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if not line.startswith("::: "):
                continue
            options = []
            for following in lines[number + 1 :]:
                if not following.startswith("    "):
                    break
                options.append(following.strip())
            blocks[line[4:].strip()] = "members: false" not in options
    return blocks


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_in_the_api_reference(package: str) -> None:
    blocks = rendered_blocks()
    assert package in blocks or any(b.startswith(package + ".") for b in blocks), (
        f"docs/api has no page for {package}"
    )
    if blocks.get(package):
        return  # the page renders the package with all its public members
    missing = [name for name in public_names(package) if f"{package}.{name}" not in blocks]
    assert not missing, (
        f"{package}.__all__ has names the API reference lacks: add "
        + ", ".join(f"'::: {package}.{name}'" for name in missing)
        + " to the fitting section of its page in docs/api/"
    )


def test_the_public_modules_are_those_architecture_md_names() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## The public line", 1)[1].split("\n## ", 1)[0]
    listed = section.strip().split("\n\n")[1]  # the paragraph after the first one
    assert sorted(re.findall(r"`([a-z_.0-9]+)`", listed)) == sorted(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_public_name_is_bound_in_its_module(package: str) -> None:
    """Every name in ``__all__`` is defined, imported or lazily exported by the module: a
    stale entry would break ``from package import *`` and the API reference."""
    tree = ast.parse(_source(package).read_text(encoding="utf-8"))
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound.update(t.id for t in targets if isinstance(t, ast.Name))
    unbound = [name for name in public_names(package) if name not in bound]
    assert unbound == [], f"{package}.__all__ names what the module does not bind"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_internal_module_says_so_first() -> None:
    """Outside the public modules, a module's docstring starts with the word "Internal", as
    docs/architecture.md's public line says."""
    unmarked = []
    for package in ("qwen3_core", "langchain_qwen3", "llamaindex_qwen3"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if _module_name(path) in PACKAGES:
                continue
            docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            if re.match(r"Internal\b", docstring) is None:
                unmarked.append(relative)
    assert unmarked == [], (
        "internal modules whose docstring does not start with the word Internal "
        "('Internal: ...', or 'Internal (import its public names from ``package``): ...'): "
        + ", ".join(unmarked)
    )
