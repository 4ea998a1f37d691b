"""``qwen3_core.testing.VllmServer``'s process handling, without vLLM: the server's command
line is replaced by a process that only waits, so the launch, ``pid`` and ``stop`` run as
they do around a real server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from qwen3_core.testing import ModelPaths, VllmServer


def test_pid_names_the_running_process_until_it_is_stopped(
    tmp_path: Path, test_models: ModelPaths
) -> None:
    server = VllmServer(test_models.embedding, reranker=False, scratch=tmp_path, max_model_len=64)
    server.args = [sys.executable, "-c", "import time; time.sleep(120)"]
    assert server.pid is None
    server.launch()
    try:
        pid = server.pid
        assert pid is not None
        stat = Path(f"/proc/{pid}/stat").read_text()
        assert int(stat[stat.rindex(")") + 2 :].split()[1]) == os.getpid()  # launched here
        assert os.getpgid(pid) == pid  # its own group: stop() ends the engine core with it
    finally:
        server.stop()
    assert server.pid is None
    assert not Path(f"/proc/{pid}").exists()
