"""Qwen3VLEmbedder and Qwen3VLReranker against the official formulas, written out here one
input at a time on the tiny random Qwen3-VL models, float32, within 1e-4.

The reference follows QwenLM/Qwen3-VL-Embedding's code: the chat template of the checkpoint
applied to the official messages with the generation prompt, qwen-vl-utils' image handling
(RGBA pasted on white, sides rounded half to even to multiples of 32 within 4*32*32 to
1800*32*32 pixels, bicubic resize), the processor's image-token expansion and
``mm_token_type_ids``, transformers' full ``Qwen3VLModel`` forward (deepstack included), the
last token's hidden state; for the reranker sigmoid(h . (w_yes - w_no)) from the lm_head.
"""

from __future__ import annotations

import asyncio
import functools
import math
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3_core import (
    ModelKindError,
    Qwen3Embedder,
    Qwen3Reranker,
    Qwen3VLEmbedder,
    Qwen3VLReranker,
    TransformersOptions,
)
from qwen3_core.loading import quiet_transformers
from qwen3_core.testing import ModelPaths
from qwen3_core.testing.vl_models import VLModelPaths, build_vl_test_models
from qwen3_core.variants import read_config
from tests.options import CPU

TOLERANCE = 1e-4
SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)


@pytest.fixture(scope="session")
def vl_models() -> VLModelPaths:
    return build_vl_test_models()


@pytest.fixture(scope="session")
def vl_embedder(vl_models: VLModelPaths) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder(vl_models.embedding, backend=CPU)


@pytest.fixture(scope="session")
def vl_reranker(vl_models: VLModelPaths) -> Qwen3VLReranker:
    return Qwen3VLReranker(vl_models.reranker, backend=CPU)


def noise(height: int, width: int, seed: int, mode: str = "RGB") -> Image.Image:
    channels = len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    return Image.fromarray(pixels if channels > 1 else pixels[..., 0], mode=mode)


# --- the official formulas ---------------------------------------------------------------


def official_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        return white
    return image.convert("RGB")


def official_resize(image: Image.Image) -> Image.Image:
    factor, low, high = 32, 4 * 32 * 32, 1800 * 32 * 32
    width, height = image.size
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > high:
        beta = math.sqrt(height * width / high)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < low:
        beta = math.sqrt(low / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return image.resize((w_bar, h_bar))


def official_content(value: Any, prefix: str | None = None) -> list[dict[str, Any]]:
    """The official content list of one input: [prefix], images, then texts; NULL if empty."""
    content = [] if prefix is None else [{"type": "text", "text": prefix}]
    if isinstance(value, str):
        texts, images = [value], []
    elif isinstance(value, (Image.Image, Path)):
        texts, images = [], [value]
    else:
        texts = [value["text"]] if isinstance(value.get("text"), str) else value.get("text", [])
        image = value.get("image")
        images = image if isinstance(image, list) else ([] if image is None else [image])
    if not texts and not images:
        return [*content, {"type": "text", "text": "NULL"}]
    opened = [Image.open(i) if isinstance(i, Path) else i for i in images]
    content += [{"type": "image", "image": official_resize(official_to_rgb(i))} for i in opened]
    return content + [{"type": "text", "text": t} for t in texts]


@functools.cache
def _reference_parts(folder: str) -> tuple[Any, Any, Any]:
    from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    tokenizer = AutoTokenizer.from_pretrained(folder)
    processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
    with quiet_transformers():
        model = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    return tokenizer, processor, model


def official_last_state(folder: Path, messages: list[dict[str, Any]]) -> torch.Tensor:
    tokenizer, processor, model = _reference_parts(str(folder))
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [p["image"] for m in messages for p in m["content"] if p["type"] == "image"]
    kwargs: dict[str, Any] = {}
    if images:
        kwargs = dict(processor(images=images, do_resize=False, return_tensors="pt"))
        parts = text.split("<|image_pad|>")
        counts = [int(g.prod()) // 4 for g in kwargs["image_grid_thw"]]
        text = parts[0] + "".join(
            "<|image_pad|>" * n + p for n, p in zip(counts, parts[1:], strict=True)
        )
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    if images:
        kwargs["mm_token_type_ids"] = (ids == 151655).int()
    with torch.no_grad():
        hidden = model.model(input_ids=ids, **kwargs).last_hidden_state
    return hidden[0, -1]


def official_embedding(folder: Path, value: Any, instruction: str | None = None) -> np.ndarray:
    if instruction:
        instruction = instruction.strip()
        if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
            instruction += "."
    system = instruction or "Represent the user's input."
    messages = [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": official_content(value)},
    ]
    state = official_last_state(folder, messages)
    return torch.nn.functional.normalize(state, dim=-1).numpy()


def official_score(folder: Path, query: Any, document: Any, instruction: str) -> float:
    content = [{"type": "text", "text": "<Instruct>: " + instruction}]
    content += official_content(query, "<Query>:") + official_content(document, "\n<Document>:")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
        {"role": "user", "content": content},
    ]
    state = official_last_state(folder, messages)
    tokenizer, _, model = _reference_parts(str(folder))
    head = model.lm_head.weight.detach()
    vocab = tokenizer.get_vocab()
    return float(torch.sigmoid(state @ (head[vocab["yes"]] - head[vocab["no"]])))


# --- the inputs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return make_inputs(tmp_path_factory.mktemp("images"))


def make_inputs(folder: Path) -> list[Any]:
    """Every input kind, with images that exercise each sizing and conversion rule."""
    png = folder / "page.png"
    noise(90, 130, 1).save(png)
    rgba = folder / "logo.png"
    transparent = noise(64, 64, 2, "RGBA")
    transparent.putalpha(Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))))
    transparent.save(rgba)
    return [
        "a plain text about revenue",
        noise(70, 100, 3),  # a PIL image
        png,  # a path
        rgba,  # RGBA: pasted on white
        noise(80, 112, 4),  # 2.5 and 3.5 patches: half to even
        noise(20, 30, 5),  # scaled up to the minimum
        noise(1200, 1600, 6),  # scaled down to the maximum (1728 tokens)
        {"text": "a caption", "image": png},
        {"image": [noise(40, 40, 7), png], "text": "two images"},
        {"text": "texts first in the mapping", "image": noise(64, 96, 8)},
        {},  # NULL
        "",
    ]


def test_embeddings_match_the_official_formula(
    vl_models: VLModelPaths, vl_embedder: Qwen3VLEmbedder, inputs: list[Any]
) -> None:
    batch = vl_embedder.embed_documents(inputs)
    assert batch.shape == (len(inputs), 64) and batch.dtype == np.float32
    for index, value in enumerate(inputs):
        expected = official_embedding(vl_models.embedding, value)
        alone = vl_embedder.embed_documents([value])[0]
        assert np.abs(batch[index] - expected).max() < TOLERANCE, index
        assert np.abs(alone - expected).max() < TOLERANCE, index
    # The outputs depend on the image and on the text (the test models are not flat).
    assert np.abs(batch[1] - batch[4]).max() > 0.05
    assert np.abs(batch[7] - batch[2]).max() > 0.05


def test_query_instruction_and_dimensions(vl_models: VLModelPaths, inputs: list[Any]) -> None:
    embedder = Qwen3VLEmbedder(vl_models.embedding, backend=CPU, dimensions=16)
    query = ["revenue chart for 2024", inputs[1]]
    got = embedder.embed_queries(query, instruction="  Find the slide that answers ")
    for row, value in zip(got, query, strict=True):
        full = official_embedding(vl_models.embedding, value, "Find the slide that answers")
        cut = full[:16] / np.linalg.norm(full[:16])
        assert np.abs(row - cut).max() < TOLERANCE
    default = embedder.embed_queries(query[:1])[0]
    full = official_embedding(
        vl_models.embedding, query[0], "Retrieve images or text relevant to the user's query."
    )
    assert np.abs(default - full[:16] / np.linalg.norm(full[:16])).max() < TOLERANCE
    assert asyncio.run(embedder.aembed_queries(query[:1])).tolist() == [default.tolist()]


def test_reranker_matches_the_official_formula(
    vl_models: VLModelPaths, vl_reranker: Qwen3VLReranker, inputs: list[Any]
) -> None:
    documents = inputs[:4] + inputs[7:]
    for query in ("revenue chart for 2024", inputs[1], {"text": "q", "image": inputs[2]}):
        scores = vl_reranker.score(query, documents)
        for index, document in enumerate(documents):
            expected = official_score(
                vl_models.reranker,
                query,
                document,
                "Given a search query, retrieve relevant candidates that answer the query.",
            )
            assert abs(scores[index] - expected) < TOLERANCE, (query, index)
    scores = vl_reranker.score(inputs[1], documents)
    assert scores.max() - scores.min() > 0.1  # the scores spread
    pairs = [(inputs[1], d) for d in documents]
    assert np.abs(vl_reranker.score_pairs(pairs) - scores).max() < TOLERANCE
    own = vl_reranker.score("x", ["y"], instruction="Find charts")[0]
    assert abs(own - official_score(vl_models.reranker, "x", "y", "Find charts")) < TOLERANCE


def test_rerank_orders_by_log_odds(vl_reranker: Qwen3VLReranker, inputs: list[Any]) -> None:
    documents = inputs[:4]
    logits = vl_reranker.logits("revenue", documents)
    hits = vl_reranker.rerank("revenue", documents, top_n=3)
    assert [h.index for h in hits] == list(np.argsort(-logits, kind="stable")[:3])
    for hit in hits:
        assert hit.document is documents[hit.index]
        assert hit.logit == pytest.approx(float(logits[hit.index]), abs=1e-6)
        assert hit.score == pytest.approx(1 / (1 + math.exp(-hit.logit)), abs=1e-6)
    again = asyncio.run(vl_reranker.arerank("revenue", documents, top_n=3))
    assert [h.index for h in again] == [h.index for h in hits]


def test_text_is_cut_but_images_and_frame_are_kept(vl_models: VLModelPaths) -> None:
    embedder = Qwen3VLEmbedder(vl_models.embedding, backend=CPU, max_length=40)
    image = noise(64, 64, 9)  # 4 image tokens
    long_text = "revenue " * 100
    (ids,) = embedder.tokenize([{"text": long_text, "image": image}])
    tokenizer, _, _ = _reference_parts(str(vl_models.embedding))
    full = tokenizer.apply_chat_template(
        [
            {
                "role": "system",
                "content": [{"type": "text", "text": "Represent the user's input."}],
            },
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": long_text}]},
        ],
        add_generation_prompt=True,
        tokenize=False,
    ).replace("<|image_pad|>", "<|image_pad|>" * 4)
    official = tokenizer(full)["input_ids"]
    specials = set(tokenizer.all_special_ids) | {151652, 151653, 151655}
    body, tail = official[:-5], official[-5:]
    budget = 40 - sum(t in specials for t in body)
    kept, count = [], 0
    for token in body:  # the official reranker's cut: special tokens stay, text is cut
        if token in specials:
            kept.append(token)
        elif count < budget:
            kept.append(token)
            count += 1
    assert ids.tolist() == kept + tail
    assert (ids == 151655).sum() == 4 and len(ids) == 45


def test_text_models_are_refused_by_name(test_models: ModelPaths, vl_models: VLModelPaths) -> None:
    with pytest.raises(ModelKindError, match=r"text Qwen3 model.*Qwen3Embedder"):
        Qwen3VLEmbedder(test_models.embedding, backend=CPU)
    with pytest.raises(ModelKindError, match=r"text Qwen3 model.*Qwen3Reranker"):
        Qwen3VLReranker(test_models.reranker, backend=CPU)


def test_vl_models_given_to_text_classes_name_the_vl_class(vl_models: VLModelPaths) -> None:
    vl = r"is a Qwen3-VL model \(model_type='qwen3_vl'\), not a text Qwen3 model: load it with "
    with pytest.raises(ModelKindError, match=vl + "Qwen3VLEmbedder$"):
        Qwen3Embedder(vl_models.embedding, backend=CPU)
    with pytest.raises(ModelKindError, match=vl + "Qwen3VLReranker$"):
        Qwen3Reranker(vl_models.reranker, backend=CPU)
    with pytest.raises(ModelKindError, match=vl + "Qwen3VLEmbedder or Qwen3VLReranker$"):
        read_config(vl_models.embedding)  # no kind asked for: both classes


def _linked_copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).symlink_to(path)
    return target


def test_sentence_transformers_layout(
    vl_models: VLModelPaths, vl_embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    import json

    folder = _linked_copy(vl_models.embedding, tmp_path / "st")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "lasttoken"}))
    embedder = Qwen3VLEmbedder(folder, backend=CPU)
    assert "sentence-transformers" in embedder.variant.description
    texts = ["a text", {"text": "b"}]
    assert np.abs(embedder.embed_documents(texts) - vl_embedder.embed_documents(texts)).max() < 1e-6
    with pytest.raises(ModelKindError, match="Qwen3VLEmbedder"):
        Qwen3VLReranker(folder, backend=CPU)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"}))
    with pytest.raises(ModelKindError, match="last token"):
        Qwen3VLEmbedder(folder, backend=CPU)


def test_bad_arguments_are_named(
    vl_embedder: Qwen3VLEmbedder, vl_reranker: Qwen3VLReranker, vl_models: VLModelPaths
) -> None:
    assert vl_embedder.embed_documents([]).shape == (0, 64)
    assert vl_reranker.score("query", []).shape == (0,) and vl_reranker.rerank("q", []) == []
    with pytest.raises(TypeError, match=r"pairs\[0\] must be a \(query, document\) pair"):
        vl_reranker.score_pairs(["not a pair"])
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a str"):
        vl_embedder.embed_documents(["ok", 3])
    with pytest.raises(TypeError, match="bare str"):
        vl_embedder.embed_documents("one text")
    with pytest.raises(TypeError, match="video input is not supported"):
        vl_embedder.embed_documents([{"video": ["a.png"]}])
    with pytest.raises(ValueError, match="transformers backend"):
        Qwen3VLEmbedder(vl_models.embedding, backend="openvino")
    with pytest.raises(ValueError, match="quantization='int8' is not available"):
        Qwen3VLEmbedder(vl_models.embedding, backend=TransformersOptions(quantization="int8"))
    with Qwen3VLReranker(vl_models.reranker, backend=CPU) as closing:
        assert closing.score("q", ["d"]).shape == (1,)
    with pytest.raises(RuntimeError, match="closed"):
        closing.score("q", ["d"])
    with pytest.raises(ValueError, match="dimensions must be between 1 and 64"):
        Qwen3VLEmbedder(vl_models.embedding, backend=CPU, dimensions=65)


def test_token_budget_batches_change_nothing(
    vl_models: VLModelPaths,
    vl_embedder: Qwen3VLEmbedder,
    vl_reranker: Qwen3VLReranker,
    inputs: list[Any],
) -> None:
    small = TransformersOptions(device="cpu", max_batch_tokens=64)  # most inputs alone
    chosen = inputs[:6] + inputs[7:]
    embedder = Qwen3VLEmbedder(vl_models.embedding, backend=small)
    assert embedder.max_batch_tokens == 64
    assert (
        np.abs(embedder.embed_documents(chosen) - vl_embedder.embed_documents(chosen)).max() < 1e-5
    )
    reranker = Qwen3VLReranker(vl_models.reranker, backend=small)
    expected = vl_reranker.logits(inputs[1], chosen)
    assert np.abs(reranker.logits(inputs[1], chosen) - expected).max() < 1e-4


def test_sentence_transformers_cross_encoder_layout(
    vl_models: VLModelPaths, vl_reranker: Qwen3VLReranker, inputs: list[Any], tmp_path: Path
) -> None:
    import json

    folder = _linked_copy(vl_models.reranker, tmp_path / "st")
    modules = [
        {
            "idx": 0,
            "name": "0",
            "path": "",
            "type": "sentence_transformers.base.modules.Transformer",
        },
        {
            "idx": 1,
            "name": "1",
            "path": "1_LogitScore",
            "type": "sentence_transformers.cross_encoder.modules.LogitScore",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_LogitScore").mkdir()
    score = folder / "1_LogitScore" / "config.json"
    yes, no = 9693, 2152  # "yes" and "no" in the Qwen tokenizer
    score.write_text(json.dumps({"true_token_id": yes, "false_token_id": no}))
    documents = inputs[:3]
    expected = vl_reranker.logits("revenue", documents)
    assert (
        np.abs(Qwen3VLReranker(folder, backend=CPU).logits("revenue", documents) - expected).max()
        < 1e-5
    )
    score.write_text(json.dumps({"true_token_id": no, "false_token_id": yes}))  # as it names them
    swapped = Qwen3VLReranker(folder, backend=CPU).logits("revenue", documents)
    assert np.abs(swapped + expected).max() < 1e-5
    score.write_text(json.dumps({"true_token_id": yes}))
    with pytest.raises(ModelKindError, match="false_token_id=None"):
        Qwen3VLReranker(folder, backend=CPU)
    score.write_text(json.dumps({"true_token_id": 10**7, "false_token_id": no}))
    with pytest.raises(ModelKindError, match="outside the 151936 rows"):
        Qwen3VLReranker(folder, backend=CPU)
    with pytest.raises(ModelKindError, match="Qwen3VLReranker"):
        Qwen3VLEmbedder(folder, backend=CPU)


def test_every_way_to_give_an_image_is_the_same_image(
    vl_embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    path = tmp_path / "page.png"
    noise(60, 90, 10).save(path)
    ways = [
        path,
        {"image": path},
        {"image": str(path)},
        {"image": path.read_bytes()},
        Image.open(path),
    ]
    vectors = vl_embedder.embed_documents(ways)
    assert np.abs(vectors - vectors[0]).max() < 1e-6


def test_weights_saved_again_are_loaded_again(tmp_path: Path) -> None:
    from qwen3_core.testing.vl_models import build_vl_embedding_model

    folder = build_vl_embedding_model(tmp_path / "model", seed=20)
    before = Qwen3VLEmbedder(folder, backend=CPU)
    texts = ["a text"]
    first = before.embed_documents(texts)
    build_vl_embedding_model(tmp_path / "model", seed=21)  # a fine-tuning loop saving again
    after = Qwen3VLEmbedder(folder, backend=CPU)
    assert after.loaded_model is not before.loaded_model
    assert np.abs(after.embed_documents(texts) - first).max() > 0.01
    assert (
        np.abs(before.embed_documents(texts) - first).max() == 0
    )  # the old engine keeps its model


def test_threads_share_one_engine(
    vl_embedder: Qwen3VLEmbedder, vl_reranker: Qwen3VLReranker, inputs: list[Any]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    chosen = inputs[:6] + inputs[7:]
    expected = vl_embedder.embed_documents(chosen)
    expected_scores = vl_reranker.logits(inputs[1], chosen)
    with ThreadPoolExecutor(4) as pool:
        vectors = list(pool.map(lambda _: vl_embedder.embed_documents(chosen), range(4)))
        scores = list(pool.map(lambda _: vl_reranker.logits(inputs[1], chosen), range(4)))
    assert all(np.abs(v - expected).max() < 1e-6 for v in vectors)
    assert all(np.abs(s - expected_scores).max() < 1e-5 for s in scores)


@pytest.mark.parametrize("engine", ["Qwen3VLEmbedder", "Qwen3VLReranker"])
def test_without_pillow_the_engine_names_the_extra(engine: str, vl_models: VLModelPaths) -> None:
    """Pillow comes with the multimodal extra: without it, the engine says what to install."""
    import subprocess
    import sys

    folder = vl_models.embedding if engine == "Qwen3VLEmbedder" else vl_models.reranker
    code = (
        "import sys; sys.modules['PIL'] = None\n"  # what importing a missing package gives
        f"from qwen3_core import {engine}\n"
        "try:\n"
        f"    {engine}({str(folder)!r})\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"{engine} needs pillow, which is not installed" in result.stdout
    assert '".[multimodal]"' in result.stdout
