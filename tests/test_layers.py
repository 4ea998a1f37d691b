"""The layers of docs/architecture.md hold: every import in the packages points to its own
layer or one below it, read from the source (lazy imports inside functions included). Only
the command line imports the offline test-model builder (for ``--tiny``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first; a module belongs to the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundations",
        (
            "qwen3_core.backend_options",
            "qwen3_core.validation",
            "qwen3_core.defaults",
            "qwen3_core.extras",
            "qwen3_core.errors",
            "qwen3_core.redaction",
            "qwen3_core.exports",
            "qwen3_core.lazy",
            "qwen3_core.json_files",
            "qwen3_core.sharing",
            "qwen3_core.threads",
        ),
    ),
    (
        "text",
        (
            "qwen3_core.tokenization",
            "qwen3_core.document_windows",
            "qwen3_core.prompts",
            "qwen3_core.batching",
        ),
    ),
    (
        "checkpoints",
        (
            "qwen3_core.checkpoints",
            "qwen3_core.variants",
            "qwen3_core.hub",
            "qwen3_core.safetensors_index",
        ),
    ),
    (
        "loading and kernels",
        (
            "qwen3_core.loading",
            "qwen3_core.decoder",
            "qwen3_core.weights",
            "qwen3_core.kernels",
            "qwen3_core.devices",
        ),
    ),
    ("backends", ("qwen3_core.backends",)),
    (
        "engines",
        (
            "qwen3_core.embedder",
            "qwen3_core.reranker",
            "qwen3_core.engine",
            "qwen3_core.multimodal",
        ),
    ),
    (
        "applications",
        (
            "qwen3_core.cli",
            "qwen3_core.demo",
            "qwen3_core.evaluation",
            "qwen3_core.batch",
            "qwen3_core.serve",
        ),
    ),
    (
        "adapters",
        (
            "langchain_qwen3",
            "llamaindex_qwen3",
            "qwen3_core.adapter_settings",
            "qwen3_core.adapters",
        ),
    ),
]
PACKAGES = ("qwen3_core", "langchain_qwen3", "llamaindex_qwen3")
BUILDER = "qwen3_core.testing"


def _layer(module: str) -> int | None:
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1] if matches else None


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            if name != "qwen3_core" and not name.startswith(BUILDER):
                found[name] = path
    return found


def _imports(path: Path) -> list[tuple[str, int]]:
    imported = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            imported.extend((alias.name, node.lineno) for alias in node.names)
    return [(name, line) for name, line in imported if name.startswith(PACKAGES)]


def test_every_module_has_a_layer() -> None:
    assert [name for name in _modules() if _layer(name) is None] == []


def test_imports_point_down() -> None:
    upward = []
    for name, path in _modules().items():
        own = _layer(name)
        assert own is not None
        for target, line in _imports(path):
            if target == "qwen3_core":  # the package's lazy exports
                continue
            if target.startswith(BUILDER):
                if not name.startswith("qwen3_core.cli"):
                    upward.append(f"{name}:{line} imports the test-model builder")
                continue
            other = _layer(target)
            if other is not None and other > own:
                upward.append(f"{name}:{line} ({LAYERS[own][0]}) -> {target} ({LAYERS[other][0]})")
    assert upward == []
