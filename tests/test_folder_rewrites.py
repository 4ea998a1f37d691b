"""A model folder rewritten while engines on it are alive, as a fine-tuning loop that saves
to one folder does (``save_pretrained`` and ``cp`` write the weights file in place): a live
engine keeps its scores and never dies of a signal, and a new engine loads the new weights.

Every folder here is a full copy (no hard links), since the weights file is rewritten in
place; the scores expected are those of engines loaded from folders that nobody changes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from qwen3_core import (
    ModelFilesChangedError,
    ModelKindError,
    Qwen3Embedder,
    Qwen3Reranker,
    TransformersOptions,
)
from qwen3_core.checkpoints import open_checkpoint
from qwen3_core.testing import ModelPaths

QUERY = "What is the capital of China?"
SEEN = ["Beijing is the capital of China.", "Gravity pulls objects toward each other."]
# Words and scripts the texts above do not have: their embedding rows were never looked up
# before the weights file was rewritten.
UNSEEN = ["Ljubljana hosts a zoo; Quokkas yawn.", "東京は日本の首都です。 Кошка спит."]

OPTIONS = {
    "qwen3-rag decoder": TransformersOptions(device="cpu"),
    "qwen3-rag decoder, int8": TransformersOptions(device="cpu", quantization="int8"),
    "transformers": TransformersOptions(device="cpu", model_kwargs={"attn_implementation": "sdpa"}),
}


def _other_weights(source: Path, target: Path) -> Path:
    """Another model of the same shapes (so the same file size): every tensor scaled, the
    token embedding table's rows reversed."""
    tensors = load_file(str(source / "model.safetensors"))
    changed = {
        name: tensor.flip(0).contiguous() if name.endswith("embed_tokens.weight") else tensor * 1.5
        for name, tensor in tensors.items()
    }
    save_file(changed, str(target), metadata={"format": "pt"})
    assert target.stat().st_size == (source / "model.safetensors").stat().st_size
    return target


def _rewrite_in_place(weights: Path, new: Path) -> None:
    """What ``cp new weights`` does: the same file (inode) truncated and written again."""
    inode = weights.stat().st_ino
    shutil.copyfile(new, weights)
    assert weights.stat().st_ino == inode


def _other_model(source: Path, folder: Path, new: Path) -> Path:
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    shutil.copyfile(new, folder / "model.safetensors")
    return folder


def _rewritten(weights: Path) -> str:
    return re.escape(f"'{weights}' was rewritten after the model was loaded from it")


@pytest.mark.parametrize("name", list(OPTIONS))
def test_live_reranker_keeps_its_scores_when_its_weights_are_rewritten(
    name: str, test_models: ModelPaths, tmp_path: Path
) -> None:
    """Scores of text already seen are kept. So are those of new text with transformers,
    which holds the whole table; qwen3-rag's decoder reads a token's embedding row when the
    token is first seen, and that row is gone from the file: an error names the file."""
    options = OPTIONS[name]
    folder = shutil.copytree(test_models.reranker, tmp_path / "model")
    weights = folder / "model.safetensors"
    new = _other_weights(test_models.reranker, tmp_path / "new.safetensors")
    reference = Qwen3Reranker(test_models.reranker, backend=options)
    live = Qwen3Reranker(folder, backend=options)
    before = live.logits(QUERY, SEEN)
    np.testing.assert_array_equal(before, reference.logits(QUERY, SEEN))

    _rewrite_in_place(weights, new)
    np.testing.assert_array_equal(live.logits(QUERY, SEEN), before)
    if name == "transformers":
        np.testing.assert_array_equal(live.logits(QUERY, UNSEEN), reference.logits(QUERY, UNSEEN))
    else:
        with pytest.raises(ModelFilesChangedError, match=_rewritten(weights)):
            live.logits(QUERY, UNSEEN)
        np.testing.assert_array_equal(live.logits(QUERY, SEEN), before)

    # A new engine on the folder loads the new weights, not the model loaded before.
    fresh = Qwen3Reranker(folder, backend=options)
    other = Qwen3Reranker(
        _other_model(test_models.reranker, tmp_path / "other", new), backend=options
    )
    np.testing.assert_array_equal(fresh.logits(QUERY, SEEN), other.logits(QUERY, SEEN))
    np.testing.assert_array_equal(fresh.logits(QUERY, UNSEEN), other.logits(QUERY, UNSEEN))
    assert not np.array_equal(fresh.logits(QUERY, SEEN), before)
    np.testing.assert_array_equal(live.logits(QUERY, SEEN), before)  # still the old model


def test_live_engine_keeps_every_score_when_its_weights_are_replaced(
    test_models: ModelPaths, tmp_path: Path
) -> None:
    """A file written beside the weights and renamed over them (as a download does) leaves
    the loaded file whole: a live engine reads the rows it had not read from that file."""
    options = OPTIONS["qwen3-rag decoder"]
    folder = shutil.copytree(test_models.reranker, tmp_path / "model")
    new = _other_weights(test_models.reranker, tmp_path / "new.safetensors")
    reference = Qwen3Reranker(test_models.reranker, backend=options)
    live = Qwen3Reranker(folder, backend=options)
    before = live.logits(QUERY, SEEN)
    other = Qwen3Reranker(
        _other_model(test_models.reranker, tmp_path / "other", new), backend=options
    )
    os.replace(new, folder / "model.safetensors")
    np.testing.assert_array_equal(live.logits(QUERY, SEEN), before)
    np.testing.assert_array_equal(live.logits(QUERY, UNSEEN), reference.logits(QUERY, UNSEEN))
    fresh = Qwen3Reranker(folder, backend=options)
    np.testing.assert_array_equal(fresh.logits(QUERY, SEEN), other.logits(QUERY, SEEN))


def test_live_embedder_keeps_its_vectors_when_its_weights_are_rewritten(
    test_models: ModelPaths, tmp_path: Path
) -> None:
    options = OPTIONS["qwen3-rag decoder"]
    folder = shutil.copytree(test_models.embedding, tmp_path / "model")
    weights = folder / "model.safetensors"
    new = _other_weights(test_models.embedding, tmp_path / "new.safetensors")
    live = Qwen3Embedder(folder, backend=options)
    before = live.embed_documents(SEEN)

    _rewrite_in_place(weights, new)
    np.testing.assert_array_equal(live.embed_documents(SEEN), before)
    with pytest.raises(ModelFilesChangedError, match=_rewritten(weights)):
        live.embed_documents(UNSEEN)
    other = Qwen3Embedder(
        _other_model(test_models.embedding, tmp_path / "other", new), backend=options
    )
    np.testing.assert_array_equal(
        Qwen3Embedder(folder, backend=options).embed_documents(SEEN), other.embed_documents(SEEN)
    )


_TRUNCATE = """
import json, os, sys
from qwen3_core import ModelFilesChangedError, ModelKindError, Qwen3Reranker, TransformersOptions
folder, query, seen, unseen, kwargs = sys.argv[1:6]
options = TransformersOptions(device="cpu", model_kwargs=json.loads(kwargs))
seen, unseen = json.loads(seen), json.loads(unseen)
live = Qwen3Reranker(folder, backend=options)
before = live.logits(query, seen).tolist()
os.truncate(os.path.join(folder, "model.safetensors"), 1000)
after = live.logits(query, seen).tolist()
try:
    fresh = live.logits(query, unseen).tolist()
except ModelFilesChangedError as exc:
    fresh = str(exc)
try:
    Qwen3Reranker(folder, backend=options)
    refused = None
except ModelKindError as exc:
    refused = str(exc)
print(json.dumps({"before": before, "after": after, "unseen": fresh, "refused": refused}))
"""


@pytest.mark.parametrize("name", ["qwen3-rag decoder", "transformers"])
def test_weights_truncated_under_a_live_engine(
    name: str, test_models: ModelPaths, tmp_path: Path
) -> None:
    """A file truncated under a mapping kills the process with SIGBUS where a page past its
    new end is read. In a process of its own: the engine goes on scoring what it can (new
    text, where the rows it needs are gone, is an error naming the file), and a new engine
    is refused with an error naming the file."""
    folder = shutil.copytree(test_models.reranker, tmp_path / "model")
    kwargs = dict(OPTIONS[name].model_kwargs or {})
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _TRUNCATE,
            str(folder),
            QUERY,
            json.dumps(SEEN),
            json.dumps(UNSEEN),
            json.dumps(kwargs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    report = json.loads(run.stdout.strip().splitlines()[-1])
    weights = folder / "model.safetensors"
    assert report["after"] == report["before"]
    if name == "transformers":
        reference = Qwen3Reranker(test_models.reranker, backend=OPTIONS[name])
        np.testing.assert_allclose(report["unseen"], reference.logits(QUERY, UNSEEN), atol=1e-5)
    else:
        assert re.match(_rewritten(weights), report["unseen"]), report["unseen"]
    assert report["refused"] is not None
    assert f"'{weights}' is not a readable safetensors file" in report["refused"]


def test_a_new_client_reads_a_rewritten_config(test_models: ModelPaths, tmp_path: Path) -> None:
    """Checkpoints without weights (server clients) are shared while the folder's files are
    unchanged, and read again once they change."""
    folder = shutil.copytree(test_models.reranker, tmp_path / "model")
    first = open_checkpoint(folder, "reranker", weights=False)
    assert open_checkpoint(folder, "reranker", weights=False) is first
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 4096
    (folder / "config.json").write_text(json.dumps(config))
    again = open_checkpoint(folder, "reranker", weights=False)
    assert again.config["max_position_embeddings"] == 4096
    assert first.config["max_position_embeddings"] == 32768


def test_a_folder_that_stops_being_a_model_is_refused_to_new_engines(
    test_models: ModelPaths, tmp_path: Path
) -> None:
    folder = shutil.copytree(test_models.reranker, tmp_path / "model")
    live = Qwen3Reranker(folder, backend=OPTIONS["qwen3-rag decoder"])
    before = live.logits(QUERY, SEEN)
    os.remove(folder / "model.safetensors")
    with pytest.raises(ModelKindError, match="no safetensors weights"):
        Qwen3Reranker(folder, backend=OPTIONS["qwen3-rag decoder"])
    np.testing.assert_array_equal(live.logits(QUERY, SEEN), before)
