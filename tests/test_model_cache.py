"""The one cache of the offline test models: where it is, and building into it from several
processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3_core.testing import ModelPaths, build_test_models, cache, models_cache_folder
from qwen3_core.testing.cache import COMPLETE, build_once

# Each process builds into FOLDER with a write that takes a while and logs that it ran. The
# module is loaded from its file: qwen3_core.testing's __init__ imports torch (seconds each).
BUILDER = """
import importlib.util, os, sys, time
from pathlib import Path

spec = importlib.util.spec_from_file_location("cache", sys.argv[3])
cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cache)
folder, log = Path(sys.argv[1]), Path(sys.argv[2])

def write(staging: Path) -> None:
    with log.open("a") as handle:
        handle.write(f"{os.getpid()}\\n")
    time.sleep(1.0)
    (staging / "weights").write_text("w" * 100_000)

cache.build_once(folder, write)
print((folder / "weights").stat().st_size)
"""


def test_the_folder_comes_from_the_variable_else_the_user_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QWEN3_RAG_TEST_MODELS", str(tmp_path / "models"))
    assert models_cache_folder() == tmp_path / "models"
    monkeypatch.delenv("QWEN3_RAG_TEST_MODELS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_cache_folder() == tmp_path / "xdg" / "qwen3-rag" / "test-models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert models_cache_folder() == Path.home() / ".cache" / "qwen3-rag" / "test-models"


def test_the_suite_builds_into_that_folder(test_models: ModelPaths) -> None:
    assert test_models.embedding.parents[1] == models_cache_folder()
    assert build_test_models() == test_models  # a second call reuses the built models


def test_building_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A notebook's first cell may build the models: no "Writing model shards" bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()  # the demo's tests turn bars off
    hf_logging.enable_progress_bar()
    try:
        capfd.readouterr()
        build_test_models(tmp_path, shape="tiny")
        assert capfd.readouterr() == ("", "")
        assert hf_logging.is_progress_bar_enabled()  # restored for the user's own saves
    finally:
        if not was_enabled:
            hf_logging.disable_progress_bar()


def test_processes_building_at_once_build_once(tmp_path: Path) -> None:
    folder, log = tmp_path / "cache" / "tiny-v9", tmp_path / "writes.log"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(folder), str(log), cache.__file__],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    sizes = [process.communicate(timeout=120)[0].strip() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0]
    assert sizes == ["100000"] * 3  # every process found the whole file
    assert len(log.read_text().split()) == 1  # and only one wrote it
    assert sorted(p.name for p in folder.parent.iterdir()) == [".tiny-v9.lock", "tiny-v9"]


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def write(staging: Path) -> None:
        (staging / "weights").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_once(tmp_path / "tiny-v9", write)
    assert [p.name for p in tmp_path.iterdir()] == [".tiny-v9.lock"]


def test_leftovers_of_a_killed_builder_are_replaced(tmp_path: Path) -> None:
    (tmp_path / ".tiny-v9.building").mkdir()  # killed while writing
    (tmp_path / ".tiny-v9.building" / "weights").write_text("half")
    (tmp_path / "tiny-v9").mkdir()  # an older builder wrote in place and never finished
    (tmp_path / "tiny-v9" / "stale").write_text("half")

    build_once(tmp_path / "tiny-v9", lambda staging: (staging / "weights").write_text("whole"))
    assert sorted(os.listdir(tmp_path / "tiny-v9")) == [COMPLETE, "weights"]
    assert (tmp_path / "tiny-v9" / "weights").read_text() == "whole"
    assert not (tmp_path / ".tiny-v9.building").exists()
