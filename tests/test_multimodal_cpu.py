"""What the Qwen3-VL engines run, and that it computes what the full model computes: on CPU in
float32 the text models' linear kernel (oneDNN's, ``TransformersOptions(cpu_linear=...)``) in
the language model's decoder layers and in the vision tower, shown in ``engine.options``; a
reranker's query image through the vision tower once per call; the yes/no rows read at load.
On the tiny random Qwen3-VL models, against transformers' full ``Qwen3VLModel`` forward."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3_core import ModelKindError, Qwen3VLEmbedder, Qwen3VLReranker, TransformersOptions
from qwen3_core.hub import HubOptions
from qwen3_core.kernels.onednn_linear import OneDnnLinear
from qwen3_core.loading import quiet_transformers
from qwen3_core.multimodal.loading import load_vl_model
from qwen3_core.testing.vl_models import VLModelPaths, build_vl_test_models
from tests.options import CPU
from tests.test_multimodal_engine import official_resize, official_score

TORCH_LINEARS = replace(CPU, cpu_linear="torch")
INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."


@pytest.fixture(scope="module")
def vl_models() -> VLModelPaths:
    return build_vl_test_models()


def noise(height: int, width: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _linears(engine: Qwen3VLEmbedder | Qwen3VLReranker) -> dict[str, list[torch.nn.Module]]:
    """The linear layers of the language model's decoder layers and of the vision tower."""
    model: Any = engine.loaded_model
    kinds = (torch.nn.Linear, OneDnnLinear)
    return {
        part: [m for m in module.modules() if isinstance(m, kinds)]
        for part, module in (("decoder", model.language_model.layers), ("vision", model.visual))
    }


def test_options_show_what_runs_on_cpu(vl_models: VLModelPaths) -> None:
    shown = TransformersOptions(
        device="cpu",
        dtype="float32",
        decoder="transformers",
        cpu_linear="onednn",
        cpu_threads="adaptive",
    )
    engines = (
        Qwen3VLEmbedder(vl_models.embedding, backend=CPU),
        Qwen3VLReranker(vl_models.reranker, backend=CPU),
    )
    for engine in engines:
        assert engine.options == shown
        assert engine.dtype == torch.float32
        for part, linears in _linears(engine).items():
            assert linears and all(isinstance(m, OneDnnLinear) for m in linears), part
            assert all(m.kernel == "onednn" for m in linears), part
    said = Qwen3VLEmbedder(vl_models.embedding, backend=replace(CPU, decoder="transformers"))
    assert said.options == shown and said.loaded_model is engines[0].loaded_model
    with pytest.raises(ValueError, match="decoder='qwen3-rag' covers text Qwen3 models"):
        Qwen3VLEmbedder(vl_models.embedding, backend=replace(CPU, decoder="qwen3-rag"))


def test_cpu_linear_torch_is_honoured_and_changes_no_result(vl_models: VLModelPaths) -> None:
    inputs: list[Any] = [
        "a text",
        noise(70, 100, 1),
        {"text": "caption", "image": noise(40, 60, 2)},
    ]
    fast = Qwen3VLEmbedder(vl_models.embedding, backend=CPU)
    plain = Qwen3VLEmbedder(vl_models.embedding, backend=TORCH_LINEARS)
    assert plain.options.cpu_linear == "torch" and plain.options.dtype == "float32"
    assert plain.loaded_model is not fast.loaded_model  # one model per kernel
    for part, linears in _linears(plain).items():
        assert linears and all(type(m) is torch.nn.Linear for m in linears), part
    np.testing.assert_allclose(
        plain.embed_documents(inputs), fast.embed_documents(inputs), rtol=0, atol=1e-5
    )
    fast_reranker = Qwen3VLReranker(vl_models.reranker, backend=CPU)
    plain_reranker = Qwen3VLReranker(vl_models.reranker, backend=TORCH_LINEARS)
    assert plain_reranker.options.cpu_linear == "torch"
    assert all(type(m) is torch.nn.Linear for ms in _linears(plain_reranker).values() for m in ms)
    np.testing.assert_allclose(
        plain_reranker.logits(inputs[1], inputs),
        fast_reranker.logits(inputs[1], inputs),
        rtol=0,
        atol=1e-5,
    )


def _patch_rows(image: Image.Image) -> int:
    """Rows of 16 x 16 px patches the official sizing gives the image."""
    width, height = official_resize(image).size
    return (width // 16) * (height // 16)


def test_a_query_image_goes_through_the_vision_tower_once(vl_models: VLModelPaths) -> None:
    reranker = Qwen3VLReranker(vl_models.reranker, backend=CPU)
    query = noise(90, 130, 3)
    images = [noise(40 + 8 * i, 64, 10 + i) for i in range(4)]
    documents: list[Any] = [f"document {i}" for i in range(16)] + images
    seen: list[int] = []
    visual = reranker.loaded_model.visual
    hook = visual.register_forward_hook(lambda _m, args, _out: seen.append(len(args[0])))
    try:
        logits = reranker.logits(query, documents)  # prompts encoded 16 at a time: 2 chunks
        shared_rows = sum(seen)
        seen.clear()
        separate = reranker.logits_pairs([(query, d) for d in documents])
        separate_rows = sum(seen)
    finally:
        hook.remove()
    query_rows, image_rows = _patch_rows(query), sum(_patch_rows(i) for i in images)
    assert shared_rows == query_rows + image_rows  # the query once, each document image once
    assert separate_rows == len(documents) * query_rows + image_rows
    # The same log-odds as the full forward (each pair's images through the tower in it).
    np.testing.assert_allclose(logits, separate, rtol=0, atol=1e-6)
    for index in (0, 15, 16, 19):
        expected = official_score(vl_models.reranker, query, documents[index], INSTRUCTION)
        assert abs(1 / (1 + np.exp(-logits[index])) - expected) < 1e-4, index
    assert logits.max() - logits.min() > 0.1  # the documents are told apart


def test_yes_no_rows_are_read_at_load(vl_models: VLModelPaths) -> None:
    from transformers import Qwen3VLForConditionalGeneration

    loaded = load_vl_model(vl_models.reranker, "reranker", CPU, HubOptions())
    direction = loaded.score_direction
    assert isinstance(direction, torch.Tensor) and direction.dtype == torch.float32
    with quiet_transformers():
        full = Qwen3VLForConditionalGeneration.from_pretrained(
            str(vl_models.reranker), dtype=torch.float32
        )
    head = full.lm_head.weight.detach()
    yes, no = 9693, 2152  # "yes" and "no" in the Qwen tokenizer
    assert torch.equal(direction, head[yes] - head[no])
    assert (
        load_vl_model(vl_models.embedding, "embedding", CPU, HubOptions()).score_direction is None
    )
    assert Qwen3VLReranker(vl_models.reranker, backend=CPU)._direction is direction


def test_vision_token_ids_must_agree_with_the_tokenizer(
    vl_models: VLModelPaths, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for path in vl_models.embedding.iterdir():
        if path.name != "config.json":
            (folder / path.name).symlink_to(path)
    config = json.loads((vl_models.embedding / "config.json").read_text())
    config["image_token_id"] = 151654  # not <|image_pad|>: images would land elsewhere
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelKindError, match=r"image_token_id=151654.*'<\|image_pad\|>' at 151655"):
        Qwen3VLEmbedder(folder, backend=CPU)


# Each case in a process of its own, as in tests/test_onednn_linear.py: the probe's verdict and
# a failure hold for the whole process. torch's oneDNN ops are taken away before the first
# model (the probe meets them missing) or made to raise once the engines are built.
_FALLBACK = """
import json, sys
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from qwen3_core import Qwen3VLEmbedder, Qwen3VLReranker, TransformersOptions
from qwen3_core.kernels.onednn_linear import OneDnnLinear

case, embedding, reranker = sys.argv[1:4]
real = torch.ops.mkldnn
pack = real._reorder_linear_weight


def raising(*args):
    raise RuntimeError("could not create a primitive descriptor")


image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 100, 3), np.uint8))
inputs = ["a text", image, {"text": "caption", "image": image}]


def kernels(engines):
    model = [e.loaded_model for e in engines]
    found = [m for x in model for m in x.modules() if isinstance(m, torch.nn.Linear | OneDnnLinear)]
    return sorted({getattr(m, "kernel", type(m).__name__) for m in found})


def results(embedder, reranker):
    return [embedder.embed_documents(inputs).tolist(), reranker.logits(image, inputs).tolist()]


plain = TransformersOptions(device="cpu", cpu_linear="torch")
want = results(Qwen3VLEmbedder(embedding, backend=plain), Qwen3VLReranker(reranker, backend=plain))
if case == "missing":
    torch.ops.mkldnn = SimpleNamespace(_reorder_linear_weight=pack)
cpu = TransformersOptions(device="cpu")
engines = (Qwen3VLEmbedder(embedding, backend=cpu), Qwen3VLReranker(reranker, backend=cpu))
loaded = kernels(engines)
if case == "running":
    torch.ops.mkldnn = SimpleNamespace(_reorder_linear_weight=pack, _linear_pointwise=raising)
got = results(*engines)
print(json.dumps({
    "loaded": loaded,
    "options": [e.options.cpu_linear for e in engines],
    "after": kernels(engines),
    "close": float(max(np.abs(np.array(g) - np.array(w)).max() for g, w in zip(got, want))),
}))
"""


@pytest.mark.parametrize(
    ("case", "loaded", "shown", "after"),
    [("missing", "Linear", "torch", "Linear"), ("running", "onednn", "onednn", "torch")],
)
def test_onednn_failures_fall_back_to_torch_as_for_text_models(
    case: str, loaded: str, shown: str, after: str, vl_models: VLModelPaths
) -> None:
    """oneDNN missing at load: the Qwen3-VL engines keep ``nn.Linear`` and say so; oneDNN
    failing while running: each layer turns to torch's kernel. Either way the results are
    torch's and one warning says why."""
    import subprocess
    import sys

    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _FALLBACK,
            case,
            str(vl_models.embedding),
            str(vl_models.reranker),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [loaded] and report["after"] == [after]
    assert report["options"] == [shown, shown]
    assert report["close"] < 1e-5
    (line,) = [line for line in run.stderr.splitlines() if "torch's own kernel" in line]
    assert ("unavailable" if case == "missing" else "failed while running") in line


# In a process of its own: other tests keep models (and transformers' reference models,
# which stay views of the files) alive in this one.
_RESIDENT = """
import json, os, sys

from qwen3_core import Qwen3VLEmbedder, Qwen3VLReranker, TransformersOptions
from tests.resident_pages import resident_bytes

embedding, reranker = sys.argv[1:3]
cpu = TransformersOptions(device="cpu")
engines = (Qwen3VLEmbedder(embedding, backend=cpu), Qwen3VLReranker(reranker, backend=cpu))
files = [os.path.join(folder, "model.safetensors") for folder in (embedding, reranker)]
# Every tensor the engines hold read once, as running them reads them.
for engine in engines:
    for tensor in engine.loaded_model.state_dict().values():
        tensor.float().sum()
inodes = [os.stat(f).st_ino for f in files]
with open("/proc/self/maps") as maps:
    mapped = [int(line.split()[4]) for line in maps if len(line.split()) >= 6]
print(json.dumps({
    "kernels": [e.options.cpu_linear for e in engines],
    "mappings": [mapped.count(inode) for inode in inodes],
    "resident": [resident_bytes(f) for f in files],
    "sizes": [os.path.getsize(f) for f in files],
}))
"""


def test_the_weights_are_held_once_after_load(vl_models: VLModelPaths) -> None:
    """On CPU with oneDNN's packed linears, the files' pages read at load are not kept
    resident beside the model's own copies: each tensor is copied out of the mapped
    safetensors file and the mapping goes, so reading every weight the engines hold maps
    none of the file back (the results are checked against transformers' full model in
    tests/test_multimodal_engine.py and above)."""
    import subprocess
    import sys

    args = [str(vl_models.embedding), str(vl_models.reranker)]
    run = subprocess.run(
        [sys.executable, "-c", _RESIDENT, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],  # where `tests` is importable
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["kernels"] == ["onednn", "onednn"]
    for resident, size in zip(report["resident"], report["sizes"], strict=True):
        assert resident < 0.05 * size, (resident, size)
    assert report["mappings"] == [0, 0]  # no tensor is a view of the files any more
