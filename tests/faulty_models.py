"""Real checkpoints with one real fault, derived from the tiny test models: a final norm that
overflows float16, and a reranker tokenizer without single "yes" and "no" tokens. Each is a
copy (hard links where possible) with files rewritten; nothing is mocked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

# The final RMSNorm's gain, times this, puts hidden values past float16's 65504 (they are
# about 1 to 4 after the norm) while float32 holds them easily.
OVERFLOW_GAIN = 3e4


def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_except(source: Path, target: Path, rewritten: str) -> Path:
    shutil.copytree(
        source,
        target,
        copy_function=link_or_copy,
        ignore=shutil.ignore_patterns(rewritten),
        dirs_exist_ok=True,
    )
    return target


def float16_overflow_copy(source: Path, target: Path) -> Path:
    """``source`` with its final norm's gain scaled by ``OVERFLOW_GAIN``: finite in float32,
    inf (then NaN) in float16, as a checkpoint with large activations gives."""
    if (target / "model.safetensors").is_file():
        return target
    _copy_except(source, target, "model.safetensors")
    tensors = load_file(str(source / "model.safetensors"))
    key = "model.norm.weight" if "model.norm.weight" in tensors else "norm.weight"
    tensors[key] = tensors[key] * OVERFLOW_GAIN
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def byte_level_tokenizer_copy(source: Path, target: Path) -> Path:
    """``source`` with a byte-level BPE tokenizer that has no merges, so "yes" and "no" are
    several tokens each: a tokenizer that is not Qwen3's, beside Qwen3 weights."""
    if (target / "tokenizer.json").is_file():
        return target
    shutil.copytree(
        source,
        target,
        copy_function=link_or_copy,
        ignore=shutil.ignore_patterns("tokenizer*.json"),
        dirs_exist_ok=True,
    )
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer.save(str(target / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
    }
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target
