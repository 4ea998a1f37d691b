"""The adapters' engine settings come from one spec per engine (``qwen3_core.adapter_settings``):
each engine keyword is a setting of every adapter of that engine, with the engine's default
and one description; a ready engine's values are read back into each adapter; an adapter
builds its engine with every setting. The checks walk the spec, so they cover a new setting
without a change here (unless its default has no obvious other value: see ``OTHER``)."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

from langchain_qwen3 import Qwen3CrossEncoder, Qwen3Embeddings
from langchain_qwen3 import Qwen3Rerank as LangChainRerank
from llamaindex_qwen3 import Qwen3Embedding
from llamaindex_qwen3 import Qwen3Rerank as LlamaIndexRerank
from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.adapter_settings import EMBEDDER, RERANKER, EngineSpec
from qwen3_core.testing import ModelPaths
from tests.options import CPU

Engine = type[Qwen3Embedder] | type[Qwen3Reranker]
SPECS: dict[Engine, EngineSpec[Any]] = {Qwen3Reranker: RERANKER, Qwen3Embedder: EMBEDDER}
ADAPTERS: dict[Engine, list[type[Any]]] = {
    Qwen3Reranker: [LangChainRerank, Qwen3CrossEncoder, LlamaIndexRerank],
    Qwen3Embedder: [Qwen3Embeddings, Qwen3Embedding],
}
ENGINES = list(SPECS)
IDS = [engine.__name__ for engine in ENGINES]

# The engine keywords no adapter offers: where the checkpoint comes from (a hub revision,
# token, cache, mirror), which the model's id or folder already settles for an adapter.
NOT_ADAPTER_SETTINGS = {"revision", "token", "cache_dir", "local_files_only", "source"}

# A value other than the default for the settings whose default has no other of its kind
# (None, one of a Literal's) or whose other must suit the tiny models; every other setting
# but the model and backend gets ``another(default)``. A value read back from an engine
# built with these cannot be the default by chance.
OTHER: dict[str, Any] = {
    "instruction": "Given a question, retrieve the passages that name a capital city",
    "max_length": 512,
    "max_document_tokens": 200,
    "long_documents": "chunk",
    "dimensions": 16,
}


def settings_of(adapter: type[Any]) -> dict[str, str]:
    """The adapter's setting fields and their engine keywords, as its spec maps them."""
    spec: EngineSpec[Any] = adapter._SPEC
    found = {name: spec.keyword(name) for name in adapter.model_fields}
    return {name: keyword for name, keyword in found.items() if keyword is not None}


def another(value: Any) -> Any:
    """A value of the same kind as ``value`` but other."""
    if isinstance(value, str):
        return value + " (another)"
    if isinstance(value, int) and not isinstance(value, bool):
        return value + 1
    raise AssertionError(f"no other value for {value!r}: give one in OTHER")


def others(engine: Engine) -> dict[str, Any]:
    """A value other than the default for each setting of ``engine`` but the model and
    backend, by engine keyword."""
    defaults = inspect.signature(engine).parameters
    return {
        keyword: OTHER[keyword] if keyword in OTHER else another(defaults[keyword].default)
        for keyword in SPECS[engine].settings
        if keyword not in ("model", "backend")
    }


def engine_with_other_values(engine: Engine, models: ModelPaths) -> Any:
    folder = models.reranker if engine is Qwen3Reranker else models.embedding
    return engine(str(folder), backend=CPU, **others(engine))


@pytest.mark.parametrize("engine", ENGINES, ids=IDS)
def test_every_engine_setting_is_a_field_of_each_adapter(engine: Engine) -> None:
    spec = SPECS[engine]
    parameters = inspect.signature(engine).parameters
    assert set(spec.settings) == set(parameters) - NOT_ADAPTER_SETTINGS - {"self"}
    assert set(spec.fixed).isdisjoint(spec.per_call)
    descriptions: dict[str, set[str]] = {keyword: set() for keyword in spec.settings}
    for adapter in ADAPTERS[engine]:
        fields = settings_of(adapter)
        assert sorted(fields.values()) == sorted(spec.settings), adapter
        for name, keyword in fields.items():
            info = adapter.model_fields[name]
            assert info.default == parameters[keyword].default, (adapter, name)
            assert info.description, (adapter, name)
            descriptions[keyword].add(info.description)
    # One description per setting, whichever adapter shows it.
    assert all(len(texts) == 1 for texts in descriptions.values()), descriptions


@pytest.mark.parametrize("engine", ENGINES, ids=IDS)
def test_a_ready_engine_is_read_back_into_each_adapter(
    engine: Engine, test_models: ModelPaths
) -> None:
    spec = SPECS[engine]
    ready = engine_with_other_values(engine, test_models)
    want = {keyword: spec.read(ready, keyword) for keyword in spec.settings}
    other = others(engine)
    assert {keyword: want[keyword] for keyword in other} == other
    for adapter_class in ADAPTERS[engine]:
        adapter = adapter_class(engine=ready)
        assert adapter.engine is ready
        fields = settings_of(adapter_class)
        assert {keyword: getattr(adapter, name) for name, keyword in fields.items()} == want
        # A pickle leaves the engine behind: the fields alone build an engine that reads
        # back the same, so the adapter passes every setting to the engine it builds.
        again = pickle.loads(pickle.dumps(adapter))
        assert not again.engine_loaded
        assert {keyword: spec.read(again.engine, keyword) for keyword in spec.settings} == want


@pytest.mark.parametrize("engine", ENGINES, ids=IDS)
def test_beside_a_ready_engine_fixed_settings_are_refused_and_per_call_ones_kept(
    engine: Engine, test_models: ModelPaths
) -> None:
    spec = SPECS[engine]
    ready = engine_with_other_values(engine, test_models)
    for adapter_class in ADAPTERS[engine]:
        for name, keyword in settings_of(adapter_class).items():
            default = adapter_class.model_fields[name].default
            # Given as None beside an engine, a setting counts as not given: give a value.
            given = default if default is not None else another(others(engine)[keyword])
            if keyword in spec.fixed:
                with pytest.raises(ValueError, match=f"engine= was given together with {name}"):
                    adapter_class(engine=ready, **{name: given})
                continue
            # A per-call setting given beside the engine is the adapter's, in every call;
            # given as None, it is the engine's.
            kept = adapter_class(engine=ready, **{name: given})
            assert getattr(kept, name) == given != spec.read(ready, keyword)
            assert kept.call_settings()[keyword] == given
            engines = adapter_class(engine=ready, **{name: None})
            assert engines.call_settings()[keyword] == spec.read(ready, keyword)


@pytest.mark.parametrize("engine", ENGINES, ids=IDS)
def test_a_copy_builds_a_new_engine_only_for_a_fixed_setting(
    engine: Engine, test_models: ModelPaths
) -> None:
    spec = SPECS[engine]
    ready = engine_with_other_values(engine, test_models)
    for adapter_class in ADAPTERS[engine]:
        adapter = adapter_class(engine=ready)
        for name, keyword in settings_of(adapter_class).items():
            changed = adapter.model_copy(update={name: adapter_class.model_fields[name].default})
            if keyword in spec.per_call:
                assert changed.engine is ready
            else:
                # The copy no longer holds the ready engine: it builds one from its fields.
                assert changed.ready_engine is None and not changed.engine_loaded
