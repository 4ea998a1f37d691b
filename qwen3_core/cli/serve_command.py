"""Internal: ``qwen3-rag serve``, its arguments, their checks, and the run. Parsing and
checking import neither the engine nor the web stack; they are imported once the command
line is known good.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from dataclasses import dataclass

from qwen3_core import defaults, prompts
from qwen3_core.backend_options import BackendOptions
from qwen3_core.errors import UsageError
from qwen3_core.serve.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ServeSettings,
    check_served_name,
    is_loopback,
)

API_KEY_VARIABLE = "QWEN3_RAG_API_KEY"
_OPTIONS = {
    "max_concurrent_requests": "--max-concurrent-requests",
    "max_documents": "--max-documents",
    "max_request_bytes": "--max-request-bytes",
    "request_timeout_s": "--request-timeout",
    "max_merged_tokens": "--max-merged-tokens",
}
SERVE_MODULES = ("fastapi", "uvicorn", "prometheus_client")


def add_serve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from qwen3_core.cli.parser import add_backend_arguments

    defaults_ = ServeSettings()
    command = commands.add_parser(
        "serve",
        help="serve the models over HTTP (Cohere, Jina, TEI and OpenAI rerank and embedding APIs)",
        description="Serve an embedding model, a reranker, or both over HTTP, in the schemas "
        "that rerank and embedding clients already speak: Cohere and Jina rerank "
        "(/v1/rerank, /v2/rerank), TEI (/rerank, /embed), OpenAI (/v1/embeddings, /v1/models), "
        "Cohere embed (/v2/embed), and vLLM's as qwen3-rag's ServerOptions client sends them; "
        "/health and Prometheus /metrics. Binds 127.0.0.1 unless --host says otherwise; any "
        "other address needs --api-key (or --no-auth).",
    )
    command.add_argument("--embedding-model", help="hub id or local folder of the embedding model")
    command.add_argument("--reranker-model", help="hub id or local folder of the reranker")
    command.add_argument(
        "--tiny",
        action="store_true",
        help="serve the tiny random offline models (no download; the scores are random)",
    )
    command.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)"
    )
    command.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to bind (default: %(default)s)"
    )
    command.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the Bearer key every request must carry (default: ${API_KEY_VARIABLE}, if set); "
        "needed to bind an address other than a loopback one",
    )
    command.add_argument(
        "--no-auth",
        action="store_true",
        help="bind a non-loopback address without a key (anyone who reaches it may use it)",
    )
    command.add_argument(
        "--instruction",
        default=None,
        help="task instruction for queries and reranking when a request gives none "
        f"(default: {prompts.DEFAULT_INSTRUCTION!r}, or the query prompt a checkpoint declares)",
    )
    command.add_argument(
        "--max-length",
        type=int,
        default=defaults.MAX_LENGTH,
        metavar="TOKENS",
        help="longest input in tokens; longer texts are cut, or refused (413) when a request "
        'asks not to cut them (truncate: false or "NONE") (default: %(default)s)',
    )
    command.add_argument(
        "--dimensions",
        type=int,
        metavar="N",
        help="embeddings' length unless a request asks for fewer (default: all)",
    )
    command.add_argument(
        "--served-model-name",
        action="append",
        metavar="NAME",
        help="a model's name in answers and GET /v1/models, accepted in a request's model "
        "field besides the hub id or folder and its last path component (any other model "
        "gets 404): once per model served, the embedding model's first (default: the hub id "
        "or folder)",
    )
    limits = command.add_argument_group("limits")
    limits.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=defaults_.max_concurrent_requests,
        metavar="N",
        help="requests queued or computing at once; one more is answered 429 with Retry-After "
        "(default: %(default)s)",
    )
    limits.add_argument(
        "--max-documents",
        type=int,
        default=defaults_.max_documents,
        metavar="N",
        help="most documents or texts in one request, else 413 (default: %(default)s)",
    )
    limits.add_argument(
        "--max-request-bytes",
        type=int,
        default=defaults_.max_request_bytes,
        metavar="BYTES",
        help="largest request body, else 413 (default: %(default)s)",
    )
    limits.add_argument(
        "--request-timeout",
        type=float,
        default=defaults_.request_timeout_s,
        metavar="SECONDS",
        help="a request's deadline, else 504 (default: %(default)s)",
    )
    limits.add_argument(
        "--max-merged-tokens",
        type=int,
        default=defaults_.max_merged_tokens,
        metavar="TOKENS",
        help="most tokens of queued requests merged into one engine call (default: %(default)s)",
    )
    add_backend_arguments(command)


@dataclass(frozen=True)
class ServeRequest:
    """A checked ``qwen3-rag serve`` command line."""

    embedding_model: str | None
    reranker_model: str | None
    tiny: bool
    backend: BackendOptions
    host: str
    port: int
    settings: ServeSettings
    instruction: str | None
    max_length: int
    dimensions: int | None
    embedding_model_name: str | None
    reranker_model_name: str | None


def check_serve_arguments(
    args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] = os.environ
) -> ServeRequest:
    """The request ``args`` make, or a ``UsageError`` naming the problem."""
    from qwen3_core.cli.checks import backend_options

    if not (args.embedding_model or args.reranker_model or args.tiny):
        raise UsageError(
            "nothing to serve: pass --embedding-model, --reranker-model or both (or --tiny)"
        )
    if args.tiny and (args.embedding_model or args.reranker_model):
        raise UsageError("--tiny serves the tiny test models: leave out the model options")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0 to 65535, got {args.port}")
    api_key = args.api_key if args.api_key is not None else environ.get(API_KEY_VARIABLE)
    if api_key is not None and not api_key.strip():
        raise UsageError("--api-key is empty")
    if args.no_auth and api_key is not None:
        raise UsageError(f"--no-auth and an API key (--api-key or ${API_KEY_VARIABLE}) disagree")
    if api_key is None and not args.no_auth and not is_loopback(args.host):
        raise UsageError(
            f"--host {args.host} can be reached from other machines: pass --api-key KEY (or set "
            f"${API_KEY_VARIABLE}), or --no-auth to serve it without a key"
        )
    if args.max_length < 1:
        raise UsageError(f"--max-length must be at least 1, got {args.max_length}")
    if args.dimensions is not None and args.dimensions < 1:
        raise UsageError(f"--dimensions must be at least 1, got {args.dimensions}")
    embedding_name, reranker_name = _served_names(args)
    try:
        settings = ServeSettings(
            api_key=api_key,
            max_concurrent_requests=args.max_concurrent_requests,
            max_documents=args.max_documents,
            max_request_bytes=args.max_request_bytes,
            request_timeout_s=args.request_timeout,
            max_merged_tokens=args.max_merged_tokens,
        )
    except ValueError as exc:  # named by the setting: say the option instead
        name = str(exc).split(" ", 1)[0]
        raise UsageError(str(exc).replace(name, _OPTIONS.get(name, name), 1)) from exc
    return ServeRequest(
        embedding_model=args.embedding_model,
        reranker_model=args.reranker_model,
        tiny=bool(args.tiny),
        backend=backend_options(args),
        host=args.host,
        port=args.port,
        settings=settings,
        instruction=args.instruction,
        max_length=args.max_length,
        dimensions=args.dimensions,
        embedding_model_name=embedding_name,
        reranker_model_name=reranker_name,
    )


def _served_names(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The embedding model's and the reranker's ``--served-model-name`` (one per model
    served, the embedding model's first), each None when not given."""
    names: list[str] = args.served_model_name or []
    kinds = [
        kind
        for kind, served in (
            ("embedding", args.embedding_model or args.tiny),
            ("reranker", args.reranker_model or args.tiny),
        )
        if served
    ]
    if names and len(names) != len(kinds):
        raise UsageError(
            f"--served-model-name is given once per model served, the embedding model's first: "
            f"got {len(names)} for {len(kinds)} ({' and '.join(kinds)})"
        )
    for name in names:
        try:
            check_served_name("--served-model-name", name)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    given = dict(zip(kinds, names, strict=False))  # none given: no names
    return given.get("embedding"), given.get("reranker")


def run_serve(args: argparse.Namespace) -> int:
    """Check the command line, load the models, serve until interrupted."""
    request = check_serve_arguments(args)
    missing = [name for name in SERVE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"qwen3-rag serve needs {', '.join(m.replace('_', '-') for m in missing)}, which "
            'is not installed: run pip install -e ".[serve]" in a clone of qwen3-rag'
        )
    from qwen3_core.cli.models import _quiet_libraries, check_installed

    check_installed(tiny=request.tiny, backend=request.backend)
    _quiet_libraries()
    embedding_model, reranker_model = request.embedding_model, request.reranker_model
    if request.tiny:
        from qwen3_core.testing import build_test_models

        print("Serving tiny RANDOM offline models: the API is real, the scores are random.")
        models = build_test_models(shape="tiny")
        embedding_model, reranker_model = str(models.embedding), str(models.reranker)
    import uvicorn

    from qwen3_core.serve import create_app

    for kind, model in (("embedding model", embedding_model), ("reranker", reranker_model)):
        if model is not None:
            print(f"Loading the {kind} {model} ...", flush=True)
    app = create_app(
        embedding_model,
        reranker_model,
        backend=request.backend,
        settings=request.settings,
        instruction=request.instruction,
        max_length=request.max_length,
        dimensions=request.dimensions,
        embedding_model_name=request.embedding_model_name,
        reranker_model_name=request.reranker_model_name,
    )
    key = "with an API key" if request.settings.api_key else "without an API key"
    print(f"Serving on http://{request.host}:{request.port} ({key}); Ctrl-C stops.", flush=True)
    uvicorn.run(
        app,
        host=request.host,
        port=request.port,
        timeout_graceful_shutdown=int(request.settings.drain_timeout_s),
        log_level="info",
    )
    return 0
