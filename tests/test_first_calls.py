"""The first call after a model loads gives exactly what every later call gives.

torch's CPU builds compute cos, sin and other functions with MKL's vector math library, whose
first use in a process, on several threads at once, sometimes returned values 1.5e-4 off: the
rotary tables of a decoder's first forward pass. Without ``prepare_vector_math`` at load, the
first reranker score of a fresh process was up to 2e-4 off in more than half of the runs, so
three fresh processes find it about 19 times in 20."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3_core.testing import ModelPaths


@pytest.mark.parametrize("run", range(3))
def test_first_calls_in_a_fresh_process_equal_the_next(test_models: ModelPaths, run: int) -> None:
    script = Path(__file__).with_name("first_calls.py")
    done = subprocess.run(
        [sys.executable, str(script), str(test_models.embedding), str(test_models.reranker)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"scores": 0.0, "vectors": 0.0}
