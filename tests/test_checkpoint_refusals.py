"""Checkpoints that cannot be scored exactly are refused by name, before any weights are
read: missing tensors, the wrong kind of model, unexpected label counts, sentence-
transformers pipelines the engine would not reproduce. Each is a real folder derived from the
tiny models with one thing changed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen3_core import ModelKindError, Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.testing import ModelPaths, VariantPaths
from qwen3_core.testing.variants import seq_cls_copy
from qwen3_core.variants import recognise
from tests.faulty_models import link_or_copy
from tests.options import CPU


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, copy_function=link_or_copy)
    return target


def _rewrite_json(path: Path, **changes: Any) -> None:
    value = json.loads(path.read_text())
    value.update(changes)
    path.unlink()  # a hard link: never write through to the original
    path.write_text(json.dumps(value))


def _drop_tensors(folder: Path, *names: str) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    for name in names:
        del tensors[name]
    (folder / "model.safetensors").unlink()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_missing_decoder_tensor_is_named(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = _copy(test_models.reranker, tmp_path / "r")
    _drop_tensors(folder, "model.layers.1.mlp.down_proj.weight")
    with pytest.raises(ModelKindError, match=r"model\.layers\.1\.mlp\.down_proj\.weight"):
        Qwen3Reranker(folder, backend=CPU)
    folder = _copy(test_models.embedding, tmp_path / "e")
    _drop_tensors(folder, "layers.0.self_attn.k_norm.weight")
    with pytest.raises(ModelKindError, match=r"layers\.0\.self_attn\.k_norm\.weight.*random"):
        Qwen3Embedder(folder, backend=CPU)


def test_untied_reranker_without_lm_head(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = _copy(test_models.reranker, tmp_path / "r")
    _drop_tensors(folder, "lm_head.weight")
    _rewrite_json(folder / "config.json", tie_word_embeddings=False)
    with pytest.raises(ModelKindError, match=r"no lm_head\.weight.*would be random"):
        Qwen3Reranker(folder, backend=CPU)


def test_seq_cls_with_three_labels(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = seq_cls_copy(test_models.reranker, tmp_path / "r", 2)
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["score.weight"] = tensors["score.weight"][[0, 1, 1]]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    labels = {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    _rewrite_json(folder / "config.json", id2label=labels, num_labels=3)
    with pytest.raises(ModelKindError, match="3 labels"):
        Qwen3Reranker(folder, backend=CPU)


def test_seq_cls_without_its_score_head(test_variants: VariantPaths, tmp_path: Path) -> None:
    folder = _copy(test_variants.rerankers["seq-cls-1"], tmp_path / "r")
    _drop_tensors(folder, "score.weight")
    with pytest.raises(ModelKindError, match=r"no score\.weight"):
        Qwen3Reranker(folder, backend=CPU)


def test_seq_cls_labels_in_another_meaning(test_variants: VariantPaths, tmp_path: Path) -> None:
    folder = _copy(test_variants.rerankers["seq-cls-2"], tmp_path / "r")
    _rewrite_json(folder / "config.json", id2label={"0": "negative", "1": "neutral"})
    with pytest.raises(ModelKindError, match=r"expected \[no, yes\]"):
        Qwen3Reranker(folder, backend=CPU)


def test_swapped_labels_are_followed(test_variants: VariantPaths, tmp_path: Path) -> None:
    folder = _copy(test_variants.rerankers["seq-cls-2"], tmp_path / "r")
    _rewrite_json(folder / "config.json", id2label={"0": "yes", "1": "no"})
    assert recognise(folder, "reranker").yes_label == 0


@pytest.mark.parametrize(
    ("variant", "engine", "message"),
    [
        ("seq-cls-1", Qwen3Embedder, "sequence-classification reranker.*Qwen3Reranker"),
        ("sentence-transformers", Qwen3Embedder, "cross-encoder.*Qwen3Reranker"),
        ("causal-tied", Qwen3Embedder, "reranker or chat model.*Qwen3Reranker"),
    ],
)
def test_reranker_variants_refused_as_embedders(
    variant: str, engine: Any, message: str, test_variants: VariantPaths
) -> None:
    with pytest.raises(ModelKindError, match=message):
        engine(test_variants.rerankers[variant], backend=CPU)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("sentence-transformers", "embedding model.*Qwen3Embedder"),
        ("causal-lm", "embedding model saved as a causal LM.*Qwen3Embedder"),
        ("flat", "embedding model.*Qwen3Embedder"),
    ],
)
def test_embedding_variants_refused_as_rerankers(
    variant: str, message: str, test_variants: VariantPaths
) -> None:
    with pytest.raises(ModelKindError, match=message):
        Qwen3Reranker(test_variants.embeddings[variant], backend=CPU)


@pytest.mark.parametrize("vocabulary_first", [False, True], ids=["as-saved", "vocabulary-first"])
def test_causal_lm_embedder_told_by_its_post_processor_wherever_it_lies(
    vocabulary_first: bool, test_variants: VariantPaths, tmp_path: Path
) -> None:
    """The tokenizer's post-processor is read without parsing the whole file; a
    tokenizer.json that keeps it after the 18 MB vocabulary still marks the embedding model,
    and a reranker's still reads as a reranker's."""
    embedding = _copy(test_variants.embeddings["causal-lm"], tmp_path / "e")
    reranker = _copy(test_variants.rerankers["causal-untied"], tmp_path / "r")
    if vocabulary_first:
        for folder in (embedding, reranker):
            path = folder / "tokenizer.json"
            value = json.loads(path.read_text())
            value = {"model": value.pop("model"), **value}
            path.unlink()
            path.write_text(json.dumps(value))
    with pytest.raises(ModelKindError, match="embedding model saved as a causal LM"):
        Qwen3Reranker(embedding, backend=CPU)
    assert recognise(reranker, "reranker").architecture == "causal_lm"


def test_a_tokenizer_json_cut_short_is_refused(test_variants: VariantPaths, tmp_path: Path) -> None:
    folder = _copy(test_variants.rerankers["causal-untied"], tmp_path / "r")
    path = folder / "tokenizer.json"
    text = path.read_text()
    path.unlink()
    path.write_text(text[: text.index('"post_processor"') + 30])
    with pytest.raises(ModelKindError, match=r"tokenizer\.json' is not valid JSON"):
        Qwen3Reranker(folder, backend=CPU)


def test_sentence_transformers_pooling_other_than_last_token(
    test_variants: VariantPaths, tmp_path: Path
) -> None:
    folder = _copy(test_variants.embeddings["sentence-transformers"], tmp_path / "e")
    _rewrite_json(folder / "1_Pooling" / "config.json", pooling_mode="mean")
    with pytest.raises(ModelKindError, match="another mode than the last token"):
        Qwen3Embedder(folder, backend=CPU)


def test_sentence_transformers_extra_module(test_variants: VariantPaths, tmp_path: Path) -> None:
    folder = _copy(test_variants.embeddings["sentence-transformers"], tmp_path / "e")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "x.models.Dense"})
    (folder / "modules.json").unlink()
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelKindError, match="Dense module"):
        Qwen3Embedder(folder, backend=CPU)


def test_cross_encoder_scoring_one_token(test_variants: VariantPaths, tmp_path: Path) -> None:
    folder = _copy(test_variants.rerankers["sentence-transformers"], tmp_path / "r")
    _rewrite_json(folder / "1_LogitScore" / "config.json", false_token_id=None)
    with pytest.raises(ModelKindError, match="false_token_id=None"):
        Qwen3Reranker(folder, backend=CPU)


def test_cross_encoder_token_outside_the_vocabulary(
    test_variants: VariantPaths, tmp_path: Path
) -> None:
    folder = _copy(test_variants.rerankers["sentence-transformers"], tmp_path / "r")
    _rewrite_json(folder / "1_LogitScore" / "config.json", true_token_id=10**7)
    with pytest.raises(ModelKindError, match="true_token_id=10000000"):
        Qwen3Reranker(folder, backend=CPU)


def test_folder_without_safetensors(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = _copy(test_models.reranker, tmp_path / "r")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelKindError, match="no safetensors weights"):
        Qwen3Reranker(folder, backend=CPU)


def test_shard_named_in_the_index_but_absent(test_variants: VariantPaths, tmp_path: Path) -> None:
    folder = _copy(test_variants.rerankers["sharded-bf16"], tmp_path / "r")
    shard = sorted(folder.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(ModelKindError, match=f"lacks the weight file '{shard.name}'"):
        Qwen3Reranker(folder, backend=CPU)


def test_tensor_of_another_shape(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = _copy(test_models.reranker, tmp_path / "r")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["model.layers.0.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"][:5]
    (folder / "model.safetensors").unlink()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelKindError, match=r"up_proj"):
        Qwen3Reranker(folder, backend=CPU)


def test_remote_code_stays_off(test_models: ModelPaths, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"trust_remote_code.*never"):
        Qwen3Reranker(
            test_models.reranker,
            backend=TransformersOptions(device="cpu", model_kwargs={"trust_remote_code": True}),
        )


@pytest.mark.parametrize("layers", [0, 1])
def test_config_with_fewer_layers_than_stored(
    layers: int, test_models: ModelPaths, tmp_path: Path
) -> None:
    """A config that counts fewer decoder layers than the files hold would silently skip the
    rest (0: no decoder at all)."""
    folder = _copy(test_models.reranker, tmp_path / "r")
    _rewrite_json(
        folder / "config.json",
        num_hidden_layers=layers,
        layer_types=["full_attention"] * layers,
    )
    with pytest.raises(
        ModelKindError,
        match=rf"holds 2 decoder layers.*num_hidden_layers={layers}: "
        rf"model\.layers\.{layers} and after would be silently skipped",
    ):
        Qwen3Reranker(folder, backend=CPU)


def test_decoder_tensor_the_config_does_not_describe(
    test_models: ModelPaths, tmp_path: Path
) -> None:
    """Attention biases in the files while the config says attention_bias: false would be
    ignored."""
    folder = _copy(test_models.embedding, tmp_path / "e")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["layers.0.self_attn.q_proj.bias"] = torch.ones(
        tensors["layers.0.self_attn.q_proj.weight"].shape[0]
    )
    (folder / "model.safetensors").unlink()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(
        ModelKindError, match=r"does not describe \(layers\.0\.self_attn\.q_proj\.bias\)"
    ):
        Qwen3Embedder(folder, backend=CPU)


# In a process of its own, with its address space capped: a config of 100 million layers
# must be refused from the config and the files' headers, before anything is built per layer.
_ABSURD_LAYERS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from qwen3_core import ModelKindError, Qwen3Reranker, TransformersOptions
try:
    Qwen3Reranker(sys.argv[1], backend=TransformersOptions(device="cpu"))
except ModelKindError as exc:
    print(exc)
"""


def test_config_with_absurdly_many_layers(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = _copy(test_models.reranker, tmp_path / "r")
    _rewrite_json(folder / "config.json", num_hidden_layers=100_000_000)
    run = subprocess.run(
        [sys.executable, "-c", _ABSURD_LAYERS, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "gives num_hidden_layers=100000000, but the weights hold 2 decoder layers" in run.stdout


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_attention_heads": 0, "head_dim": None}, "num_attention_heads=0"),
        ({"num_key_value_heads": 0}, "num_key_value_heads=0"),
        ({"hidden_size": 64.0}, "hidden_size=64.0"),
        ({"vocab_size": None}, "lacks the Qwen3 setting vocab_size"),
        ({"num_key_value_heads": 3}, "2 attention heads for 3 key/value heads"),
    ],
)
def test_config_sizes_that_no_qwen3_decoder_has(
    changes: dict[str, Any], message: str, test_models: ModelPaths, tmp_path: Path
) -> None:
    folder = _copy(test_models.reranker, tmp_path / "r")
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(
        json.dumps({k: v for k, v in config.items() if v is not None})
    )
    with pytest.raises(ModelKindError, match=rf"config\.json' .*{re.escape(message)}"):
        Qwen3Reranker(folder, backend=CPU)


def test_config_json_nested_too_deeply(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = _copy(test_models.reranker, tmp_path / "r")
    (folder / "config.json").unlink()
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelKindError, match=r"config\.json' nests its JSON too deeply"):
        Qwen3Reranker(folder, backend=CPU)


def test_added_token_whose_key_is_not_an_id(test_models: ModelPaths, tmp_path: Path) -> None:
    folder = _copy(test_models.reranker, tmp_path / "r")
    path = folder / "tokenizer_config.json"
    settings = json.loads(path.read_text())
    settings["added_tokens_decoder"] = {"abc": {"content": "<|endoftext|>", "special": True}}
    path.unlink()
    path.write_text(json.dumps(settings))
    with pytest.raises(
        ModelKindError, match=r"tokenizer_config\.json': added_tokens_decoder has the key 'abc'"
    ):
        Qwen3Reranker(folder, backend=CPU)
