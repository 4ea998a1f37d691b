"""``qwen3-rag serve``: the engines behind the HTTP APIs that rerank and embedding clients
already speak (Cohere, Jina, TEI, OpenAI, and vLLM's as ``ServerOptions`` sends it).

``create_app`` is the ASGI app (FastAPI), for any ASGI server; ``ray_deployment`` the same as
a Ray Serve application. Needs the ``serve`` extra: ``pip install "qwen3-rag[serve]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen3_core.exports import lazy_exports

if TYPE_CHECKING:
    from qwen3_core.serve.app import create_app, ray_deployment
    from qwen3_core.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "ray_deployment"]

# Imported on first use: the command line reads the settings without the web stack.
_HOMES = {
    "ServeSettings": "qwen3_core.serve.settings",
    "create_app": "qwen3_core.serve.app",
    "ray_deployment": "qwen3_core.serve.app",
}

__getattr__, __dir__ = lazy_exports("qwen3_core.serve", _HOMES, globals())
