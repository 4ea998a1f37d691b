"""Internal (import its public names from ``qwen3_core.testing``): deterministic random Qwen3-VL
embedding and reranker checkpoints, written offline.

They carry what the real Qwen3-VL-Embedding and Qwen3-VL-Reranker checkpoints carry beside
their weights: the real Qwen3 tokenizer (the vision tokens at their real ids), a chat
template that renders list-valued content as Qwen3-VL's does, the image processor's
config (patch 16, merge 2, temporal patch 2, mean and std 0.5) and a
``Qwen3VLForConditionalGeneration`` config.json over ``model.language_model.*`` and
``model.visual.*`` tensors. The weights are re-drawn so that an embedding depends on both
the image and the text, and the reranker's "yes" and "no" rows are set so that P(yes)
spreads over (0, 1).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qwen3_core.loading import quiet_transformers
from qwen3_core.testing.cache import build_once, models_cache_folder
from qwen3_core.testing.tokenizer import build_qwen3_tokenizer, save_qwen3_tokenizer

# Bump when the builder's output changes, so cached copies are rebuilt.
VL_BUILDER_VERSION = 1

VISION_START_ID = 151652
VISION_END_ID = 151653
IMAGE_PAD_ID = 151655
VIDEO_PAD_ID = 151656
QWEN3_VL_VOCAB_SIZE = 151936
"""Rows of the token embedding of the released Qwen3-VL models (the tokenizer has 151,669
tokens; the rest is padding)."""

# The chat template's behaviour is Qwen3-VL's: a system turn's text parts, then each user or
# assistant turn, whose list-valued content renders an image as
# <|vision_start|><|image_pad|><|vision_end|>, a video likewise with <|video_pad|>, and a
# text part as its text, with nothing between the parts.
QWEN3_VL_CHAT_TEMPLATE = """\
{%- macro render(content) -%}
{%- if content is string -%}{{- content -}}
{%- else -%}{%- for part in content -%}
{%- if part.type == 'image' or 'image' in part or 'image_url' in part -%}
<|vision_start|><|image_pad|><|vision_end|>
{%- elif part.type == 'video' or 'video' in part -%}
<|vision_start|><|video_pad|><|vision_end|>
{%- elif 'text' in part -%}{{- part.text -}}
{%- endif -%}
{%- endfor -%}{%- endif -%}
{%- endmacro -%}
{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '\\n' + render(message.content) + '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}
"""

IMAGE_PROCESSOR_CONFIG: dict[str, Any] = {
    "image_processor_type": "Qwen2VLImageProcessorFast",
    "processor_class": "Qwen3VLProcessor",
    "do_resize": True,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "do_convert_rgb": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
}
"""The released models' preprocessor_config.json (whose size bounds the official code
overrides with its own)."""


@dataclass(frozen=True)
class VLShape:
    """The dimensions of a Qwen3-VL model, named as in transformers' configs."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    mrope_section: tuple[int, int, int]
    """How the rotary frequencies split over time, height and width (sums to head_dim/2)."""
    vision_depth: int
    vision_hidden_size: int
    vision_num_heads: int
    vision_intermediate_size: int
    deepstack_visual_indexes: tuple[int, ...]
    """The vision layers whose features are added to the first decoder layers."""
    tie_word_embeddings: bool = False


VL_SHAPES: dict[str, VLShape] = {
    # Tests: a vision tower of depth 2, both of its layers feeding the decoder (deepstack).
    "tiny": VLShape(64, 2, 2, 1, 32, 128, (6, 5, 5), 2, 32, 2, 64, (0, 1)),
    # The Qwen3-VL-2B shape (Qwen3-VL-Embedding-2B / Qwen3-VL-Reranker-2B): real cost per token.
    "2b": VLShape(2048, 28, 16, 8, 128, 6144, (24, 20, 20), 24, 1024, 16, 4096, (5, 11, 17), True),
}


@dataclass(frozen=True)
class VLModelPaths:
    """Folders of a built Qwen3-VL embedding model and reranker."""

    embedding: Path
    """The embedding model's folder, for ``Qwen3VLEmbedder``."""
    reranker: Path
    """The reranker's folder, for ``Qwen3VLReranker``."""


def _config(shape: VLShape) -> Any:
    from transformers import Qwen3VLConfig

    text = {
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "head_dim": shape.head_dim,
        "intermediate_size": shape.intermediate_size,
        "vocab_size": QWEN3_VL_VOCAB_SIZE,
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": list(shape.mrope_section),
            "mrope_interleaved": True,
        },
        "tie_word_embeddings": shape.tie_word_embeddings,
    }
    vision = {
        "depth": shape.vision_depth,
        "hidden_size": shape.vision_hidden_size,
        "num_heads": shape.vision_num_heads,
        "intermediate_size": shape.vision_intermediate_size,
        "out_hidden_size": shape.hidden_size,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 2304,
        "hidden_act": "gelu_pytorch_tanh",
        "deepstack_visual_indexes": list(shape.deepstack_visual_indexes),
    }
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=IMAGE_PAD_ID,
        video_token_id=VIDEO_PAD_ID,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        tie_word_embeddings=shape.tie_word_embeddings,
        architectures=["Qwen3VLForConditionalGeneration"],
    )


def _strengthen(model: torch.nn.Module, seed: int) -> None:
    """Re-draw the weights so that outputs depend on the whole input: at the default 0.02
    init the residual stream barely moves and an image's few tokens would hardly count.
    Each matrix (and the patch embedding's kernel) gets variance 1/fan-in; the q/k norms'
    gains sharpen the attention, as the text test models do."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                param.fill_(2.0)
            elif param.dim() >= 2:
                fan_in = param[0].numel()
                std = 1.0 if "embed_tokens" in name else fan_in**-0.5
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def _rerank_prompt(query: str, document: str) -> str:
    return (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
        'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
        "<|im_end|>\n<|im_start|>user\n<Instruct>: Given a search query, retrieve relevant "
        f"candidates that answer the query.<Query>:{query}\n<Document>:{document}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


_CALIBRATION = [
    ("revenue chart for 2024", "Revenue grew 12% in 2024."),
    ("revenue chart for 2024", "A cat sleeps on a sofa."),
    ("什么是重力？", "重力是地球对物体的吸引力。"),
    ("a red square", "NULL"),
    ("quantum computing", "Python is a programming language."),
    ("history of the Great Wall", "The Great Wall of China is a famous landmark."),
]


def _calibrate_yes_no(model: torch.nn.Module, seed: int) -> None:
    """Point the "yes" minus "no" lm_head direction away from what every prompt shares, and
    scale it so that P(yes) spreads over (0, 1)."""
    tokenizer = build_qwen3_tokenizer(append_eos=False)
    yes, no = tokenizer.token_to_id("yes"), tokenizer.token_to_id("no")
    base: Any = model.model
    with torch.no_grad():
        states = torch.stack(
            [
                base(
                    input_ids=torch.tensor(
                        [tokenizer.encode(_rerank_prompt(q, d), add_special_tokens=False).ids]
                    )
                ).last_hidden_state[0, -1]
                for q, d in _CALIBRATION
            ]
        )
        mean = states.mean(0)
        direction = torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed + 7))
        direction -= (direction @ mean) / (mean @ mean) * mean
        spread = (states @ direction).std()
        head = model.get_output_embeddings().weight  # type: ignore[operator]
        head[yes] = head[no] + direction * (2.0 / spread)


def _save(model: torch.nn.Module, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with quiet_transformers():
        model.save_pretrained(str(folder))  # type: ignore[operator]
    tokenizer = build_qwen3_tokenizer(append_eos=False)
    save_qwen3_tokenizer(folder, tokenizer, append_eos=False, model_max_length=262144)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = QWEN3_VL_CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2))
    (folder / "chat_template.json").write_text(
        json.dumps({"chat_template": QWEN3_VL_CHAT_TEMPLATE}, indent=2)
    )
    (folder / "preprocessor_config.json").write_text(json.dumps(IMAGE_PROCESSOR_CONFIG, indent=2))
    video = {**IMAGE_PROCESSOR_CONFIG, "video_processor_type": "Qwen3VLVideoProcessor"}
    video.pop("image_processor_type")
    (folder / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))


def _model(shape: VLShape, seed: int) -> torch.nn.Module:
    from transformers import Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    model: torch.nn.Module = Qwen3VLForConditionalGeneration(_config(shape)).eval()
    _strengthen(model, seed)
    if shape.tie_word_embeddings:
        model.tie_weights()  # type: ignore[operator]
    return model


def build_vl_embedding_model(
    folder: str | Path, shape: str | VLShape = "tiny", seed: int = 10
) -> Path:
    """Write a random Qwen3-VL embedding checkpoint with the real tokenizer and processor
    config. The same arguments write the same checkpoint.

    Args:
        folder: Where to write it; an existing folder there is replaced.
        shape: A name in ``VL_SHAPES`` or a ``VLShape``.
        seed: Seeds the weights.

    Returns:
        ``folder``, as a ``Path``.

    Raises:
        KeyError: ``shape`` is a name that ``VL_SHAPES`` does not have.
    """
    dims = VL_SHAPES[shape] if isinstance(shape, str) else shape
    path = Path(folder)
    _save(_model(dims, seed), path)
    return path


def build_vl_reranker_model(
    folder: str | Path, shape: str | VLShape = "tiny", seed: int = 11
) -> Path:
    """Write a random Qwen3-VL reranker checkpoint (``Qwen3VLForConditionalGeneration``, its
    lm_head tied to the token embeddings where the shape says so), whose "yes" and "no"
    rows make P(yes) spread over (0, 1). The same arguments write the same checkpoint.

    Args:
        folder: Where to write it; an existing folder there is replaced.
        shape: A name in ``VL_SHAPES`` or a ``VLShape``.
        seed: Seeds the weights.

    Returns:
        ``folder``, as a ``Path``.

    Raises:
        KeyError: ``shape`` is a name that ``VL_SHAPES`` does not have.
    """
    dims = VL_SHAPES[shape] if isinstance(shape, str) else shape
    model = _model(dims, seed)
    if not dims.tie_word_embeddings:  # the tied head's rows are the embeddings': leave them
        _calibrate_yes_no(model, seed)
    path = Path(folder)
    _save(model, path)
    return path


def build_vl_test_models(
    root: str | Path | None = None,
    shape: str = "tiny",
    *,
    on_build: Callable[[], object] | None = None,
) -> VLModelPaths:
    """Build (or reuse, if this builder version already wrote them) both Qwen3-VL models
    under ``root``.

    Args:
        root: The cache folder (None: ``models_cache_folder()``); the models go in
            ``{root}/vl-{shape}-v{VL_BUILDER_VERSION}/``.
        shape: A name in ``VL_SHAPES``.
        on_build: Called once just before the models are written, not when they are reused.

    Returns:
        The folders of the embedding model and the reranker.

    Raises:
        KeyError: ``VL_SHAPES`` has no ``shape``.
    """
    base = Path(models_cache_folder() if root is None else root)
    base = base / f"vl-{shape}-v{VL_BUILDER_VERSION}"
    dims = VL_SHAPES[shape]

    def write(folder: Path) -> None:
        if on_build is not None:
            on_build()
        build_vl_embedding_model(folder / "embedding", dims)
        build_vl_reranker_model(folder / "reranker", dims)

    build_once(base, write)
    return VLModelPaths(embedding=base / "embedding", reranker=base / "reranker")
