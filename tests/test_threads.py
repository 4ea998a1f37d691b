"""The ``qwen3-rag`` command makes torch's OpenMP threads sleep while they wait
(``OMP_WAIT_POLICY=PASSIVE``), set before torch loads, unless the user chose a policy.

The runtime itself is asked what it read: with ``OMP_DISPLAY_ENV=verbose`` GNU libgomp prints
its settings as it loads, and its spin count before sleeping is 0 only under the passive
policy (300000 by default: its display says 'PASSIVE' for an unset policy too, so the spin
count is what tells them apart)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3_core.testing import ModelPaths
from qwen3_core.threads import WAIT_POLICY, wait_passively_unless_set

SCRIPT = Path(sys.executable).with_name("qwen3-rag")
ENTRIES = {"console script": [str(SCRIPT)], "module": [sys.executable, "-m", "qwen3_core.cli"]}


def _openmp_settings(
    entry: list[str], test_models: ModelPaths, policy: str | None
) -> dict[str, str]:
    """What torch's OpenMP runtime read as it loaded in a real ``qwen3-rag demo`` run."""
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    env["OMP_DISPLAY_ENV"] = "verbose"
    env["QWEN3_RAG_TEST_MODELS"] = str(test_models.embedding.parents[1])
    if policy is not None:
        env[WAIT_POLICY] = policy
    result = subprocess.run(
        [*entry, "demo", "--tiny", "--query", "gravity", "--top-k", "2", "--top-n", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Query: gravity" in result.stdout
    settings = dict(re.findall(r"^\s+(\w+) = '([^']*)'$", result.stderr, re.M))
    if "GOMP_SPINCOUNT" not in settings:
        pytest.skip("torch's OpenMP runtime here is not GNU libgomp (nothing to read back)")
    return settings


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_the_command_waits_passively_from_before_torch_loads(
    entry: str, test_models: ModelPaths
) -> None:
    settings = _openmp_settings(ENTRIES[entry], test_models, None)
    assert settings[WAIT_POLICY] == "PASSIVE"
    assert settings["GOMP_SPINCOUNT"] == "0"  # what PASSIVE, and only PASSIVE, reads as


def test_a_wait_policy_the_user_set_is_kept(test_models: ModelPaths) -> None:
    settings = _openmp_settings(ENTRIES["console script"], test_models, "ACTIVE")
    assert settings[WAIT_POLICY] == "ACTIVE"
    assert int(settings["GOMP_SPINCOUNT"]) > 0


def test_nothing_is_set_once_torch_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a process that has loaded torch already (as this one), the variable would change
    nothing but what child processes inherit: it is left alone."""
    import torch  # noqa: F401  (loaded, as in any program that imported it first)

    monkeypatch.delenv(WAIT_POLICY, raising=False)
    assert wait_passively_unless_set() is False
    assert WAIT_POLICY not in os.environ


def _settings_after(code: str, policy: str | None = None) -> dict[str, str]:
    """What libgomp read as torch loaded in a fresh ``python -c code``."""
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    env["OMP_DISPLAY_ENV"] = "verbose"
    if policy is not None:
        env[WAIT_POLICY] = policy
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    settings = dict(re.findall(r"^\s+(\w+) = '([^']*)'$", result.stderr, re.M))
    if "GOMP_SPINCOUNT" not in settings:
        pytest.skip("torch's OpenMP runtime here is not GNU libgomp (nothing to read back)")
    return settings


@pytest.mark.parametrize("package", ["qwen3_core", "langchain_qwen3", "llamaindex_qwen3"])
def test_importing_the_library_before_torch_waits_passively(package: str) -> None:
    settings = _settings_after(f"import {package}, torch; torch.ones(64, 64) @ torch.ones(64, 64)")
    assert settings["GOMP_SPINCOUNT"] == "0"


def test_a_program_that_loaded_torch_first_keeps_its_default() -> None:
    settings = _settings_after("import torch, qwen3_core; torch.ones(64, 64) @ torch.ones(64, 64)")
    assert int(settings["GOMP_SPINCOUNT"]) > 0


def test_a_policy_the_user_set_is_kept_by_the_library() -> None:
    code = "import qwen3_core, torch; torch.ones(64, 64) @ torch.ones(64, 64)"
    assert int(_settings_after(code, "ACTIVE")["GOMP_SPINCOUNT"]) > 0


def test_a_spin_count_the_user_set_is_kept_by_the_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOMP_SPINCOUNT", "12345")
    code = (
        "import os, qwen3_core, torch; torch.ones(64, 64) @ torch.ones(64, 64); "
        f"assert {WAIT_POLICY!r} not in os.environ, 'the library chose a policy'"
    )
    assert _settings_after(code)["GOMP_SPINCOUNT"] == "12345"
