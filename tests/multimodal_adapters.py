"""What the tests of the Qwen3-VL adapters share (tests/test_multimodal_langchain.py and
tests/test_multimodal_llamaindex.py): the tiny Qwen3-VL engines, pictures saved as files, and
the check that an adapter's settings are its engine's, from the one spec."""

from __future__ import annotations

import base64
import inspect
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qwen3_core import Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_core.adapter_settings import EngineSpec
from qwen3_core.testing.vl_models import VLModelPaths, build_vl_test_models
from tests.options import CPU

CLOSE = 1e-6
"""An adapter's numbers are the engine's: within float32 rounding of the same call."""

# The engine keywords no adapter offers (the model's id or folder settles them).
NOT_ADAPTER_SETTINGS = {"revision", "token", "cache_dir", "local_files_only", "source"}
# A value other than the default for each setting an adapter passes on (but model, backend).
OTHER: dict[str, Any] = {
    "instruction": "Find the picture of a square",
    "dimensions": 16,
    "max_length": 2048,
    "allow_remote_images": True,
    "remote_image_max_bytes": 1000,
    "remote_image_timeout": 2.5,
}


@pytest.fixture(scope="session")
def vl_models() -> VLModelPaths:
    return build_vl_test_models()


@pytest.fixture(scope="session")
def vl_embedder(vl_models: VLModelPaths) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder(vl_models.embedding, backend=CPU)


@pytest.fixture(scope="session")
def vl_reranker(vl_models: VLModelPaths) -> Qwen3VLReranker:
    return Qwen3VLReranker(vl_models.reranker, backend=CPU)


@pytest.fixture(scope="session")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four small PNG files of noise, each different (and of a different size)."""
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for seed, (height, width) in enumerate([(64, 64), (48, 80), (96, 40), (70, 70)]):
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
        path = folder / f"picture-{seed}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def data_address(path: Path) -> str:
    return f"data:image/png;base64,{b64(path)}"


def assert_close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=0, atol=CLOSE)


def ranking(scores: Any) -> list[int]:
    """Positions best first, ties in input order (as the engine and the stores sort)."""
    return [int(i) for i in np.argsort(-np.asarray(scores), kind="stable")]


def check_settings_spec(adapter_class: type[Any], engine: Any, spec: EngineSpec[Any]) -> None:
    """Each engine keyword is a field of the adapter, with the engine's default and a
    description; a ready engine's settings are read back into the fields, and a pickled
    adapter builds an engine from them that reads back the same; a fixed setting given beside
    the engine is refused."""
    parameters = inspect.signature(type(engine)).parameters
    assert set(spec.settings) == set(parameters) - NOT_ADAPTER_SETTINGS - {"self"}
    fields = {
        name: keyword
        for name in adapter_class.model_fields
        if (keyword := spec.keyword(name)) is not None
    }
    assert sorted(fields.values()) == sorted(spec.settings)
    for name, keyword in fields.items():
        info = adapter_class.model_fields[name]
        assert info.default == parameters[keyword].default, name
        assert info.description, name
    want = {keyword: spec.read(engine, keyword) for keyword in spec.settings}
    assert {k: want[k] for k in OTHER if k in want} == {k: v for k, v in OTHER.items() if k in want}
    adapter = adapter_class(engine=engine)
    assert adapter.engine is engine
    assert {keyword: getattr(adapter, name) for name, keyword in fields.items()} == want
    again = pickle.loads(pickle.dumps(adapter))
    assert not again.engine_loaded
    assert {keyword: spec.read(again.engine, keyword) for keyword in spec.settings} == want
    for name, keyword in fields.items():
        if keyword in spec.fixed:
            with pytest.raises(ValueError, match=f"engine= was given together with {name}"):
                adapter_class(engine=engine, **{name: want[keyword]})


def engine_with_other_values(engine_class: type[Any], folder: Path) -> Any:
    """An engine whose every setting but the model and backend is not its default."""
    parameters = inspect.signature(engine_class).parameters
    return engine_class(
        str(folder), backend=CPU, **{k: v for k, v in OTHER.items() if k in parameters}
    )
