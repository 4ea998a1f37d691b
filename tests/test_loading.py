"""Finding and checking model folders: clear errors, never a crash deep in transformers."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qwen3_core import (
    ModelKindError,
    ModelNotFoundError,
    Qwen3Embedder,
    Qwen3Reranker,
    TransformersOptions,
)
from qwen3_core.testing import ModelPaths, VariantPaths
from qwen3_core.weights import SafetensorsFolder
from tests.faulty_models import link_or_copy
from tests.options import CPU, on_cpu


def test_missing_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(ModelNotFoundError, match=str(missing)):
        Qwen3Embedder(missing)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        Qwen3Reranker("./not-here/model")


def test_file_instead_of_folder(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"0")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        Qwen3Embedder(path)


def test_unreachable_hub_id_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match=r"could not be fetched from the Hugging Face Hub"):
        Qwen3Embedder("Qwen/Qwen3-Embedding-0.6B-does-not-exist")


def test_embedding_model_given_to_reranker(test_models: ModelPaths) -> None:
    with pytest.raises(ModelKindError, match=r"looks like a Qwen3 embedding model.*Qwen3Embedder"):
        Qwen3Reranker(test_models.embedding)


def test_reranker_given_to_embedder(test_models: ModelPaths) -> None:
    with pytest.raises(ModelKindError, match=r"looks like a Qwen3 reranker.*Qwen3Reranker"):
        Qwen3Embedder(test_models.reranker)


def test_not_a_qwen3_model(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    shutil.copytree(test_models.embedding, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "bert"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelKindError, match=r"not a Qwen3 model.*model_type='bert'"):
        Qwen3Embedder(folder)


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelKindError, match=r"has no config\.json"):
        Qwen3Reranker(tmp_path / "empty")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu(test_models: ModelPaths) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        Qwen3Embedder(test_models.embedding, backend=TransformersOptions(device="cuda"))


def test_cpu_defaults_to_float32(embedder: Qwen3Embedder) -> None:
    assert embedder.device == torch.device("cpu") and embedder.dtype == torch.float32
    assert embedder.options == on_cpu()


def _resident_bytes(address: int) -> int:
    """The resident bytes of the mapping that holds ``address`` (from /proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                start, end = (int(n, 16) for n in head.split("-"))
                inside = start <= address < end
            elif inside and head == "Rss:":
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_only_the_embedding_rows_looked_up_are_read(
    test_models: ModelPaths, tmp_path: Path
) -> None:
    """The token embedding table (151,669 rows) is read a row at a time as tokens are first
    looked up: after a few short texts, a few pages of it are in memory, not the table. A
    state dict reads the rest: it holds the whole table as stored."""
    folder = shutil.copytree(test_models.reranker, tmp_path / "r")  # a model of its own
    engine = Qwen3Reranker(folder, backend=TransformersOptions(device="cpu"))
    engine.score("What is the capital of China?", ["Beijing is the capital of China."])
    model = engine.loaded_model
    table = model.embed_tokens.weight
    resident = _resident_bytes(table.data_ptr())
    assert 0 < resident <= 200 * 4096, resident  # the rows of a few dozen tokens
    assert table.nbytes > 30 * 2**20
    stored = load_file(str(folder / "model.safetensors"))["model.embed_tokens.weight"]
    assert torch.equal(model.state_dict()["embed_tokens.weight"], stored)


@pytest.mark.parametrize(
    "index",
    [{"metadata": {}}, {"weight_map": ["a"]}, {"weight_map": {"lm_head.weight": 3}}, []],
    ids=["no-map", "map-not-an-object", "file-not-a-name", "not-an-object"],
)
def test_a_broken_shard_index_is_named(
    index: object, test_variants: VariantPaths, tmp_path: Path
) -> None:
    """The one reader of model.safetensors.index.json refuses an index without a map of
    tensor names to file names, naming the file, for the engine and the loader alike."""
    folder = tmp_path / "sharded"
    shutil.copytree(test_variants.rerankers["sharded-bf16"], folder, copy_function=link_or_copy)
    (folder / "model.safetensors.index.json").unlink()  # maybe a link: never write through
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelKindError, match=r"model\.safetensors\.index\.json' has no weight_map"):
        Qwen3Reranker(folder, backend=CPU)
    with pytest.raises(ModelKindError, match="has no weight_map"):
        SafetensorsFolder.open(folder)
