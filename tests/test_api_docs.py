"""The API reference (docs/api/, built by ``make docs``) covers every public name: each name
in the ``__all__`` of a documented package has its own ``::: package.name`` block, or the
page renders the whole package. A name added to ``__all__`` without one fails here, with the
block to add."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
PACKAGES = [
    "qwen3_core",
    "qwen3_core.batch",
    "qwen3_core.evaluation",
    "qwen3_core.testing",
    "langchain_qwen3",
    "llamaindex_qwen3",
]


def public_names(package: str) -> list[str]:
    """``__all__`` read from the source: importing would pull torch and the frameworks."""
    path = ROOT / package.replace(".", "/") / "__init__.py"
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
