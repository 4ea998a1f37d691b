"""Each backend's typed options, passed as ``backend=``: checked when made, only the settings of
their own backend writable, and what an engine or adapter reports back. A backend's setting
written beside ``backend=`` (``device=``, ``base_url=`` ...) is an unknown keyword."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from langchain_qwen3 import Qwen3CrossEncoder, Qwen3Embeddings
from langchain_qwen3 import Qwen3Rerank as LangChainRerank
from llamaindex_qwen3 import Qwen3Embedding
from llamaindex_qwen3 import Qwen3Rerank as LlamaIndexRerank
from qwen3_core import (
    OpenVINOOptions,
    Qwen3Embedder,
    Qwen3Reranker,
    ServerOptions,
    TransformersOptions,
    VllmOptions,
)
from qwen3_core.testing import ModelPaths
from tests.options import CPU, on_cpu
from tests.servers import StandInServer

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there (nothing is sent here)
QUERY = "what is gravity"
VLLM_SETTINGS = (
    "VllmOptions takes dtype, tensor_parallel_size, gpu_memory_utilization, max_model_len, "
    "enable_prefix_caching, engine_args"
)
SERVER_SETTINGS = "ServerOptions takes base_url, api_key, timeout, max_concurrency, max_retries"
TRANSFORMERS_SETTINGS = (
    "TransformersOptions takes device, dtype, quantization, max_batch_tokens, show_progress, "
    "share_prefix, model_kwargs"
)

Engine = type[Qwen3Embedder] | type[Qwen3Reranker]
ADAPTERS: list[type[Any]] = [
    Qwen3Embeddings,
    LangChainRerank,
    Qwen3CrossEncoder,
    Qwen3Embedding,
    LlamaIndexRerank,
]
ADAPTER_IDS = [f"{cls.__module__.split('.')[0]}.{cls.__name__}" for cls in ADAPTERS]


def _is_embedding(cls: type[Any]) -> bool:
    return cls in (Qwen3Embedder, Qwen3Embeddings, Qwen3Embedding)


def _folder(models: ModelPaths, cls: type[Any]) -> Path:
    return models.embedding if _is_embedding(cls) else models.reranker


def engine_results(engine: Qwen3Embedder | Qwen3Reranker, corpus: list[str]) -> np.ndarray:
    if isinstance(engine, Qwen3Embedder):
        return np.concatenate([engine.embed_documents(corpus[:4]), engine.embed_queries([QUERY])])
    return engine.score(QUERY, corpus[:4])


def adapter_results(adapter: Any, corpus: list[str]) -> np.ndarray:
    texts = corpus[:4]
    if isinstance(adapter, Qwen3Embeddings):
        return np.array([*adapter.embed_documents(texts), adapter.embed_query(QUERY)])
    if isinstance(adapter, Qwen3Embedding):
        return np.array(adapter.get_text_embedding_batch(texts))
    if isinstance(adapter, LangChainRerank):
        docs = adapter.compress_documents([Document(page_content=t) for t in texts], QUERY)
        return np.array([d.metadata["relevance_score"] for d in docs])
    if isinstance(adapter, Qwen3CrossEncoder):
        return np.array(adapter.score([(QUERY, t) for t in texts]))
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in texts]
    return np.array([n.score for n in adapter.postprocess_nodes(nodes, query_str=QUERY)])


@pytest.fixture(scope="module")
def server(test_models: ModelPaths) -> Iterator[StandInServer]:
    stand_in = StandInServer(test_models.embedding, test_models.reranker).start()
    yield stand_in
    stand_in.stop()


# --- the options, checked when made -------------------------------------------------------

BAD_OPTIONS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("device", lambda: TransformersOptions(device="tpu"), ValueError, "unknown device 'tpu'"),
    ("device-index", lambda: TransformersOptions(device="cuda:x"), ValueError, "unknown device"),
    ("dtype", lambda: TransformersOptions(dtype="int8"), ValueError, "unknown dtype 'int8'"),
    (
        "dtype-object",
        lambda: TransformersOptions(dtype=torch.float64),
        ValueError,
        "unknown dtype torch.float64",
    ),
    (
        "quantization",
        lambda: TransformersOptions(quantization="int4"),  # type: ignore[arg-type]
        ValueError,
        "unknown quantization 'int4'",
    ),
    (
        "max_batch_tokens",
        lambda: TransformersOptions(max_batch_tokens=0),
        ValueError,
        "max_batch_tokens must be >= 1, got 0",
    ),
    (
        "max_batch_tokens-type",
        lambda: TransformersOptions(max_batch_tokens=1.5),  # type: ignore[arg-type]
        TypeError,
        "max_batch_tokens must be an int",
    ),
    (
        "show_progress",
        lambda: TransformersOptions(show_progress="yes"),  # type: ignore[arg-type]
        TypeError,
        "show_progress must be True or False",
    ),
    (
        "share_prefix",
        lambda: TransformersOptions(share_prefix="yes"),  # type: ignore[arg-type]
        TypeError,
        "share_prefix must be True or False",
    ),
    (
        "model_kwargs-type",
        lambda: TransformersOptions(model_kwargs=[("attn_implementation", "eager")]),  # type: ignore[arg-type]
        TypeError,
        "model_kwargs must be a dict",
    ),
    ("vllm-dtype", lambda: VllmOptions(dtype="fp8"), ValueError, "unknown dtype 'fp8'"),
    (
        "tensor_parallel_size",
        lambda: VllmOptions(tensor_parallel_size=0),
        ValueError,
        "tensor_parallel_size must be >= 1",
    ),
    (
        "gpu_memory_utilization-zero",
        lambda: VllmOptions(gpu_memory_utilization=0),
        ValueError,
        r"gpu_memory_utilization must be in \(0, 1\]",
    ),
    (
        "gpu_memory_utilization-above-one",
        lambda: VllmOptions(gpu_memory_utilization=1.5),
        ValueError,
        r"gpu_memory_utilization must be in \(0, 1\]",
    ),
    (
        "gpu_memory_utilization-bool",
        lambda: VllmOptions(gpu_memory_utilization=True),
        ValueError,
        r"gpu_memory_utilization must be in \(0, 1\]",
    ),
    ("max_model_len", lambda: VllmOptions(max_model_len=0), ValueError, "max_model_len must be"),
    (
        "enable_prefix_caching",
        lambda: VllmOptions(enable_prefix_caching="yes"),  # type: ignore[arg-type]
        TypeError,
        "enable_prefix_caching must be True or False",
    ),
    (
        "engine_args-type",
        lambda: VllmOptions(engine_args="enforce_eager"),  # type: ignore[arg-type]
        TypeError,
        "engine_args must be a dict",
    ),
    (
        "base_url-scheme",
        lambda: ServerOptions(base_url="localhost:8000"),
        ValueError,
        "must be an http:// or https:// address",
    ),
    ("base_url-empty", lambda: ServerOptions(base_url=[]), ValueError, "empty list"),
    (
        "base_url-item",
        lambda: ServerOptions(base_url=[DEAD, 8000]),  # type: ignore[list-item]
        TypeError,
        r"base_url\[1\] must be a str",
    ),
    (
        "api_key",
        lambda: ServerOptions(base_url=DEAD, api_key=123),  # type: ignore[arg-type]
        TypeError,
        "api_key must be a str",
    ),
    (
        "timeout",
        lambda: ServerOptions(base_url=DEAD, timeout=0),
        ValueError,
        "timeout must be a positive number",
    ),
    (
        "max_concurrency",
        lambda: ServerOptions(base_url=DEAD, max_concurrency=0),
        ValueError,
        "max_concurrency must be >= 1",
    ),
    (
        "max_retries",
        lambda: ServerOptions(base_url=DEAD, max_retries=-1),
        ValueError,
        "max_retries must be >= 0",
    ),
    # Misspelt or another backend's setting: the dataclass's own TypeError.
    ("misspelt", lambda: TransformersOptions(devise="cpu"), TypeError, "devise"),  # type: ignore[call-arg]
    ("vllm-misspelt", lambda: VllmOptions(tensor_paralel_size=2), TypeError, "tensor_paralel"),  # type: ignore[call-arg]
    ("server-misspelt", lambda: ServerOptions(base_url=DEAD, timout=5), TypeError, "timout"),  # type: ignore[call-arg]
    ("server-needs-url", lambda: ServerOptions(), TypeError, "base_url"),  # type: ignore[call-arg]
    ("device-on-vllm", lambda: VllmOptions(device="cuda"), TypeError, "device"),  # type: ignore[call-arg]
    ("device-on-server", lambda: ServerOptions(base_url=DEAD, device="cpu"), TypeError, "device"),  # type: ignore[call-arg]
    ("url-on-transformers", lambda: TransformersOptions(base_url=DEAD), TypeError, "base_url"),  # type: ignore[call-arg]
    (
        "tensor-parallel-on-transformers",
        lambda: TransformersOptions(tensor_parallel_size=2),  # type: ignore[call-arg]
        TypeError,
        "tensor_parallel_size",
    ),
    ("quantization-on-vllm", lambda: VllmOptions(quantization="int8"), TypeError, "quantization"),  # type: ignore[call-arg]
    ("old-name-on-vllm", lambda: VllmOptions(vllm_kwargs={}), TypeError, "vllm_kwargs"),  # type: ignore[call-arg]
]


@pytest.mark.parametrize(
    ("make", "error", "message"), [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS]
)
def test_options_are_checked_when_made(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    ("key", "instead"),
    [
        ("dtype", r"TransformersOptions\(dtype=\.\.\.\)"),
        ("torch_dtype", r"TransformersOptions\(dtype=\.\.\.\)"),
        ("device_map", r"TransformersOptions\(device=\.\.\.\)"),
        ("trust_remote_code", "remote code is never run"),
        ("num_labels", "the checkpoint says it"),
        ("output_loading_info", "checks the loading report itself"),
        ("revision", "the engine's revision="),
        ("token", "the engine's token="),
        ("cache_dir", "the engine's cache_dir="),
        ("local_files_only", "the engine's local_files_only="),
    ],
)
def test_model_kwargs_may_not_set_what_the_engine_owns(key: str, instead: str) -> None:
    with pytest.raises(ValueError, match=rf"model_kwargs may not set '{key}': use .*{instead}"):
        TransformersOptions(model_kwargs={key: None})


@pytest.mark.parametrize(
    ("key", "instead"),
    [
        ("model", "the engine's model argument"),
        ("tokenizer", "the checkpoint's own tokenizer"),
        ("runner", "pooling runner"),
        ("dtype", r"VllmOptions\(dtype=\.\.\.\)"),
        ("tensor_parallel_size", r"VllmOptions\(tensor_parallel_size=\.\.\.\)"),
        ("gpu_memory_utilization", r"VllmOptions\(gpu_memory_utilization=\.\.\.\)"),
        ("max_model_len", r"VllmOptions\(max_model_len=\.\.\.\)"),
        ("enable_prefix_caching", r"VllmOptions\(enable_prefix_caching=\.\.\.\)"),
        ("trust_remote_code", "remote code is never run"),
        ("hf_overrides", "derives them from the checkpoint"),
    ],
)
def test_engine_args_may_not_set_what_the_engine_owns(key: str, instead: str) -> None:
    with pytest.raises(ValueError, match=rf"engine_args may not set '{key}': use .*{instead}"):
        VllmOptions(engine_args={key: None})


def test_options_are_frozen_and_normalised() -> None:
    options = TransformersOptions(device=torch.device("cpu"), dtype=torch.bfloat16)
    assert (options.device, options.dtype) == ("cpu", "bfloat16")
    assert TransformersOptions(device=" CUDA:1 ", dtype="bf16") == TransformersOptions(
        device="cuda:1", dtype="bfloat16"
    )
    assert VllmOptions(dtype="half").dtype == "float16"
    assert ServerOptions(base_url="http://gpu-1:8000/").base_url == "http://gpu-1:8000"
    pair = ServerOptions(base_url=["http://a:1", "http://b:2"])
    assert pair.base_url == ("http://a:1", "http://b:2") and pair.urls == list(pair.base_url)
    assert "sekrit" not in repr(ServerOptions(base_url=DEAD, api_key="sekrit"))
    kwargs = {"attn_implementation": "eager"}
    copied = TransformersOptions(model_kwargs=kwargs)
    kwargs["attn_implementation"] = "sdpa"  # the options keep their own copy
    assert copied.model_kwargs == {"attn_implementation": "eager"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.device = "cuda"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TransformersOptions("cpu")  # type: ignore[misc]  # keywords only


# --- what backend= takes ------------------------------------------------------------------


def test_backend_name_means_its_default_options(
    test_models: ModelPaths, embedder: Qwen3Embedder
) -> None:
    named = Qwen3Embedder(test_models.embedding, backend="transformers")
    assert named.backend == "transformers"
    assert (
        named.options == Qwen3Embedder(test_models.embedding, backend=TransformersOptions()).options
    )
    if named.device == torch.device("cpu"):
        assert named.options == embedder.options


def test_server_needs_its_options(test_models: ModelPaths) -> None:
    for engine, folder in (
        (Qwen3Embedder, test_models.embedding),
        (Qwen3Reranker, test_models.reranker),
    ):
        with pytest.raises(
            ValueError, match=r"backend='server' needs the servers' address.*ServerOptions"
        ):
            engine(folder, backend="server")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", ADAPTERS, ids=ADAPTER_IDS)
def test_adapters_refuse_server_without_options(cls: type[Any]) -> None:
    with pytest.raises(ValueError, match="backend='server' needs the servers' address"):
        cls(backend="server")
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        cls(backend="onnx")


def test_unknown_backends_and_keywords(test_models: ModelPaths) -> None:
    with pytest.raises(
        ValueError, match="unknown backend 'onnx': use one of transformers, openvino, vllm"
    ):
        Qwen3Reranker(test_models.reranker, backend="onnx")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backend must be"):
        Qwen3Reranker(test_models.reranker, backend={"device": "cpu"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'devise'"):
        Qwen3Embedder(test_models.embedding, devise="cpu")  # type: ignore[call-arg]


def test_share_prefix_is_the_rerankers(test_models: ModelPaths) -> None:
    with pytest.raises(ValueError, match="share_prefix applies to the reranker"):
        Qwen3Embedder(
            test_models.embedding, backend=TransformersOptions(device="cpu", share_prefix=False)
        )
    # It was never an embedder keyword either.
    with pytest.raises(TypeError, match="'share_prefix'"):
        Qwen3Embedder(test_models.embedding, share_prefix=False)
    reranker = Qwen3Reranker(
        test_models.reranker, backend=TransformersOptions(device="cpu", share_prefix=False)
    )
    assert reranker.options == on_cpu(share_prefix=False)


# --- what the engines report ----------------------------------------------------------------


def test_engine_options_describe_what_runs(
    test_models: ModelPaths, embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    for engine in (embedder, reranker):
        assert engine.backend == "transformers"
        assert engine.options == on_cpu(reranker=engine is reranker)
        assert (engine.device, engine.dtype) == (torch.device("cpu"), torch.float32)
        assert isinstance(engine.loaded_model, torch.nn.Module)
        assert engine.loaded_model.dtype == torch.float32
        # The options leave the budget to the device (None); the engine has resolved it.
        assert engine.max_batch_tokens == 512
    half = Qwen3Embedder(
        test_models.embedding, backend=TransformersOptions(device="cpu", dtype="bf16")
    )
    assert half.options == on_cpu(dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.loaded_model.dtype == torch.bfloat16
    small = Qwen3Reranker(
        test_models.reranker, backend=TransformersOptions(device="cpu", max_batch_tokens=64)
    )
    assert small.options == on_cpu(reranker=True, max_batch_tokens=64)
    assert small.max_batch_tokens == 64
    assert small.loaded_model is reranker.loaded_model  # same model, device and dtype


def test_server_client_options(test_models: ModelPaths) -> None:
    options = ServerOptions(base_url=[DEAD, "http://127.0.0.1:10/"], max_retries=0)
    with Qwen3Reranker(test_models.reranker, backend=options) as client:
        assert client.backend == "server" and client.options == options
        assert client.base_url == [DEAD, "http://127.0.0.1:10"]
        assert client.device is None and client.dtype is None
        assert client.loaded_model is None and client.max_batch_tokens is None
        assert f"base_url={client.base_url!r}" in repr(client)


# --- adapters: the backend field and the engine= rule --------------------------------------


def backend_id(backend: Any) -> str:
    """A test id: the backend's name, or its options class."""
    return backend if isinstance(backend, str) else type(backend).__name__


@pytest.mark.parametrize(
    "backend",
    [
        "transformers",
        "vllm",
        TransformersOptions(device="cpu", model_kwargs={"attn_implementation": "eager"}),
        VllmOptions(max_model_len=96, engine_args={"enforce_eager": True}),
        ServerOptions(base_url=[DEAD, "http://127.0.0.1:10"], max_retries=1),
        OpenVINOOptions(cache_folder="/tmp/ov", config={"INFERENCE_NUM_THREADS": 2}),
    ],
    ids=backend_id,
)
@pytest.mark.parametrize("cls", ADAPTERS, ids=ADAPTER_IDS)
def test_adapter_backend_survives_copies_and_pickles(cls: type[Any], backend: Any) -> None:
    adapter = cls(backend=backend)
    assert adapter.backend == backend and not adapter.engine_loaded
    assert adapter.model_copy().backend == backend
    assert pickle.loads(pickle.dumps(adapter)).backend == backend
    other = VllmOptions(tensor_parallel_size=2)
    assert adapter.model_copy(update={"backend": other}).backend == other
    assert adapter.backend == backend  # the original is unchanged


ROUND_TRIP_BACKENDS = [
    "transformers",
    "vllm",
    TransformersOptions(
        device="cpu", dtype=torch.bfloat16, model_kwargs={"attn_implementation": "eager"}
    ),
    VllmOptions(max_model_len=96, engine_args={"enforce_eager": True}),
    ServerOptions(base_url=[DEAD, "http://127.0.0.1:10"], timeout=5.0, max_retries=1),
    OpenVINOOptions(max_batch_tokens=256, cache_folder="/tmp/ov", config={"NUM_STREAMS": 1}),
]


@pytest.mark.parametrize("backend", ROUND_TRIP_BACKENDS, ids=backend_id)
@pytest.mark.parametrize("cls", ADAPTERS[:3], ids=ADAPTER_IDS[:3])
def test_langchain_backend_round_trips_through_model_dump(cls: type[Any], backend: Any) -> None:
    adapter = cls(backend=backend, max_length=512)
    dumped = adapter.model_dump()
    rebuilt = cls(**dumped)
    assert rebuilt.backend == backend and rebuilt.model_dump() == dumped
    assert cls.model_validate_json(adapter.model_dump_json()).backend == backend


@pytest.mark.parametrize("backend", ROUND_TRIP_BACKENDS, ids=backend_id)
@pytest.mark.parametrize("cls", ADAPTERS[3:], ids=ADAPTER_IDS[3:])
def test_llamaindex_backend_round_trips_through_to_dict(cls: type[Any], backend: Any) -> None:
    adapter = cls(backend=backend, max_length=512)
    rebuilt = cls.from_dict(adapter.to_dict())
    assert rebuilt.backend == backend and rebuilt.to_dict() == adapter.to_dict()
    assert cls.from_json(adapter.to_json()).backend == backend


@pytest.mark.parametrize("cls", ADAPTERS, ids=ADAPTER_IDS)
def test_a_saved_adapter_holds_no_api_key(cls: type[Any]) -> None:
    backend = ServerOptions(base_url=DEAD, api_key="sekrit")
    adapter = cls(backend=backend)
    if cls in ADAPTERS[3:]:
        saved = adapter.to_json()
        rebuilt = cls.from_json(saved)
    else:
        saved = adapter.model_dump_json()
        rebuilt = cls.model_validate_json(saved)
    assert "sekrit" not in saved + repr(adapter)
    assert rebuilt.backend == dataclasses.replace(backend, api_key=None)  # give it again
    # A pickle (LlamaIndex's worker processes) is a copy in memory: it keeps the key.
    assert pickle.loads(pickle.dumps(adapter)).backend == backend


def _engine_for(cls: type[Any], embedder: Qwen3Embedder, reranker: Qwen3Reranker) -> Any:
    return embedder if _is_embedding(cls) else reranker


@pytest.mark.parametrize(
    "setting",
    [
        {"max_length": 8192},  # the default, and the engine's own
        {"backend": "transformers"},
        {"backend": CPU},
        {"model": "Qwen/Qwen3-Reranker-0.6B"},
    ],
    ids=["max_length", "backend-name", "backend-options", "model"],
)
@pytest.mark.parametrize("cls", ADAPTERS, ids=ADAPTER_IDS)
def test_any_engine_setting_beside_an_engine_is_an_error(
    cls: type[Any], setting: dict[str, Any], embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    engine = _engine_for(cls, embedder, reranker)
    name = next(iter(setting))
    if name == "model" and cls is Qwen3Embedding:
        name = "model_name"  # LlamaIndex's name for it; model= is its alias
    with pytest.raises(ValueError, match=f"engine= was given together with {name}"):
        cls(engine=engine, **setting)


@pytest.mark.parametrize("cls", [Qwen3Embeddings, Qwen3Embedding], ids=["langchain", "llamaindex"])
def test_dimensions_beside_an_engine_is_an_error(cls: type[Any], embedder: Qwen3Embedder) -> None:
    with pytest.raises(ValueError, match="engine= was given together with dimensions"):
        cls(engine=embedder, dimensions=64)


@pytest.mark.parametrize("name", ["max_length", "backend", "model"])
@pytest.mark.parametrize("cls", ADAPTERS, ids=ADAPTER_IDS)
def test_an_engine_setting_given_as_none_is_not_given(
    cls: type[Any], name: str, embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    engine = _engine_for(cls, embedder, reranker)
    adapter = cls(engine=engine, **{name: None})
    assert adapter.backend == engine.options and adapter.max_length == engine.max_length


# --- backend settings go in backend=, nowhere else -----------------------------------------

FLAT_SETTINGS: list[dict[str, Any]] = [
    {"device": "cpu"},
    {"dtype": "float32"},
    {"max_batch_tokens": 64},
    {"base_url": DEAD},
    {"vllm_kwargs": {}},
    {"backend_options": {"device": "cpu"}},
]


@pytest.mark.parametrize("settings", FLAT_SETTINGS, ids=lambda s: next(iter(s)))
@pytest.mark.parametrize(
    "cls",
    [Qwen3Embedder, Qwen3Reranker, *ADAPTERS],
    ids=["engine-embedder", "engine-reranker", *ADAPTER_IDS],
)
def test_a_flat_backend_setting_is_an_unknown_keyword(
    cls: type[Any], settings: dict[str, Any], test_models: ModelPaths
) -> None:
    """A backend's setting written beside ``backend=`` instead of inside its options is
    refused by name, before anything loads."""
    name = next(iter(settings))
    with pytest.raises((TypeError, ValueError), match=name):
        cls(model=str(_folder(test_models, cls)), **settings)


@pytest.mark.parametrize(
    ("backend", "extra"), [("transformers", "torch"), ("openvino", "openvino")]
)
def test_a_local_backend_without_torch_names_its_own_extra(
    backend: str, extra: str, test_models: ModelPaths
) -> None:
    """In a fresh interpreter where torch cannot be imported, each local backend says which
    extra installs what it needs."""
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from qwen3_core import Qwen3Embedder\n"
        f"Qwen3Embedder({str(test_models.embedding)!r}, backend={backend!r})"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"ImportError: backend={backend!r} runs the model in this process and needs torch and "
        f'transformers: run pip install -e ".[{extra}]" in a clone of qwen3-rag (a client of '
        "model servers, backend=ServerOptions(...), needs neither)"
    )


def test_every_backend_has_one_module_that_opens_it() -> None:
    """A backend is its options class and one module with ``open_model``: the registry has a
    module for every backend name, and nothing else."""
    import importlib

    from qwen3_core.backend_options import BACKENDS
    from qwen3_core.backends.registry import BACKEND_MODULES

    assert set(BACKEND_MODULES) == set(BACKENDS)
    for module in BACKEND_MODULES.values():  # each imports its engine only when it opens one
        assert callable(importlib.import_module(module).open_model), module
