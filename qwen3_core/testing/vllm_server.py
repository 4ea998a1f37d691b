"""Internal (import its public names from ``qwen3_core.testing``): vLLM's OpenAI-compatible
server in a subprocess on 127.0.0.1, for tests and benchmarks of ``backend="server"`` (needs
vLLM; on CPU, its CPU build)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from qwen3_core.backends.vllm import RERANKER_OVERRIDES
from qwen3_core.variants import recognise


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now.

    Returns:
        The port number. Nothing reserves it: another process may take it before it is
        used.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class VllmServer:
    """``python -m vllm.entrypoints.openai.api_server`` on one model, stopped by its pid.

    A causal-LM reranker gets the yes/no classifier overrides (a sequence-classification
    conversion runs as it is); on CPU a 1 GiB KV cache; sockets, caches and the log go under
    ``scratch``.

    Args:
        model: The model folder to serve.
        reranker: Serve a reranker (the score API) rather than an embedding model.
        scratch: The folder for the server's temporary files, caches and log.
        max_model_len: The longest sequence the server accepts, in tokens.

    Raises:
        ModelKindError: ``reranker`` is set and ``model`` is not a reranker folder that
            ``Qwen3Reranker`` takes.
    """

    def __init__(self, model: Path, *, reranker: bool, scratch: Path, max_model_len: int) -> None:
        self.model, self.port = model, free_port()
        overrides = reranker and recognise(model, "reranker", weights=False).architecture != (
            "seq_cls"
        )
        self.args = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            *("--model", str(model), "--runner", "pooling", "--dtype", "float32"),
            *("--enforce-eager", "--max-model-len", str(max_model_len)),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *(("--hf-overrides", json.dumps(RERANKER_OVERRIDES)) if overrides else ()),
        ]
        """The server's command line."""
        scratch.mkdir(parents=True, exist_ok=True)
        # The server's engine runs in its own process, as in production.
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"},
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "TMPDIR": str(scratch),
            "VLLM_CACHE_ROOT": str(scratch / "cache"),
        }
        """The server's environment."""
        self.log = scratch / f"server-{self.port}.log"
        """The file the server's output goes to, named in every error."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base address, ``http://127.0.0.1:{port}``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id from ``launch`` until ``stop`` or ``crash``, else None.

        Its engine core runs in a child of this process (in the same process group), so a
        process tree rooted here holds all of the server's memory.
        """
        return None if self._process is None else self._process.pid

    def launch(self) -> VllmServer:
        """Start the process without waiting (servers start in parallel: each takes 30-100 s).

        Returns:
            This server, to chain ``.wait_healthy()``.
        """
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_healthy(self, timeout_s: float = 300.0) -> VllmServer:
        """Wait until the server answers ``/health``.

        Args:
            timeout_s: How long to wait before giving up and stopping the server.

        Returns:
            This server.

        Raises:
            RuntimeError: The process exited, was never launched, or was not healthy within
                ``timeout_s``; the message names the log file.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"vLLM server exited: see {self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vLLM server not healthy after {timeout_s} s: see {self.log}")

    def start(self) -> VllmServer:
        """Launch the server and wait until it is healthy.

        Returns:
            This server.

        Raises:
            RuntimeError: As ``wait_healthy`` raises it.
        """
        return self.launch().wait_healthy()

    def crash(self) -> None:
        """SIGKILL to the server and its engine process: connections drop mid-request."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        """Stop the server and its engine process: SIGTERM, then SIGKILL after 30 s.

        Does nothing when the server is not running.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the engine core goes too
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
