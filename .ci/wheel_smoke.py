"""Run from a fresh virtual environment holding only the built wheel and its base
dependencies: what `pip install qwen3-rag` gives a client of model servers."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import qwen3_core
from qwen3_core import Qwen3Reranker, ServerOptions

installed = Path(qwen3_core.__file__).resolve()
assert "site-packages" in installed.parts, f"qwen3_core imported from {installed}, not the wheel"
assert importlib.util.find_spec("torch") is None, "the base install must not need torch"
for package in ("qwen3_core", "langchain_qwen3", "llamaindex_qwen3"):
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not in the wheel"
    assert (Path(spec.origin).parent / "py.typed").is_file(), f"{package} has no py.typed"
for left_out in ("tests", "benchmarks"):
    assert importlib.util.find_spec(left_out) is None, f"the wheel ships {left_out}/"
version = importlib.metadata.version("qwen3-rag")
# The engines import without torch; options for a server are made without contacting it.
assert Qwen3Reranker.__module__ == "qwen3_core.reranker"
ServerOptions(base_url="http://127.0.0.1:9")
script = Path(sys.executable).with_name("qwen3-rag")
shown = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
assert version in shown.stdout, shown.stdout
print(f"wheel smoke test: qwen3-rag {version} from {installed.parent}")
