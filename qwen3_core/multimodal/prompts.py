"""Internal: the official Qwen3-VL-Embedding and Qwen3-VL-Reranker prompts, as token segments.

A prompt is a list of segments: a special token (by its text), an image slot, or text. The
text between two special tokens is tokenised as one piece, exactly as the checkpoint's chat
template renders it and its tokenizer reads it; user text is read literally (it cannot
insert special tokens).

Embedder (the Qwen3-VL chat template with the generation prompt)::

    <|im_start|>system\\n{instruction}<|im_end|>\\n<|im_start|>user\\n{images}{texts}<|im_end|>\\n
    <|im_start|>assistant\\n

Reranker (no think block; no space after the colons)::

    <|im_start|>system\\n{RERANK_SYSTEM}<|im_end|>\\n<|im_start|>user\\n<Instruct>: {instruction}
    <Query>:{query}\\n<Document>:{document}<|im_end|>\\n<|im_start|>assistant\\n

An input renders its images first (each ``<|vision_start|><|image_pad|><|vision_end|>``),
then its texts; an input with neither renders as ``NULL``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from qwen3_core.multimodal.inputs import Item

EMBEDDING_INSTRUCTION = "Represent the user's input."
"""The official embedder's default instruction: what documents are embedded with."""
QUERY_INSTRUCTION = "Retrieve images or text relevant to the user's query."
"""The instruction queries get unless one is given (the official examples' query task)."""
RERANK_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
"""The official reranker's default instruction."""
RERANK_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
EMPTY_INPUT = "NULL"

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"
CLOSING_TOKENS = 5
"""``<|im_end|>``, ``\\n``, ``<|im_start|>``, ``assistant``, ``\\n``: the end of every prompt,
which truncation never cuts."""


@dataclass(frozen=True)
class Special:
    """A special token, by its text."""

    token: str


@dataclass(frozen=True)
class ImageSlot:
    """Where the image tokens of ``Item.images[index]`` of input ``owner`` go."""

    owner: int
    index: int


Segment = str | Special | ImageSlot


def embedding_instruction(instruction: str | None) -> str:
    """The system message: the instruction stripped, with a full stop added when it ends in
    no punctuation; none (or only spaces): the default."""
    task = (instruction or "").strip()
    if not task:
        return EMBEDDING_INSTRUCTION
    if not unicodedata.category(task[-1]).startswith("P"):
        task += "."
    return task


def _content(item: Item, owner: int) -> list[Segment]:
    if item.is_empty:
        return [EMPTY_INPUT]
    out: list[Segment] = []
    for index in range(len(item.images)):
        out += [Special(VISION_START), ImageSlot(owner, index), Special(VISION_END)]
    out += list(item.texts)
    return out


def _closing() -> list[Segment]:
    return [Special(IM_END), "\n", Special(IM_START), "assistant\n"]


def embedding_prompt(item: Item, instruction: str) -> list[Segment]:
    """The embedder's prompt for one input (``instruction`` as ``embedding_instruction``
    gives it)."""
    return [
        Special(IM_START),
        "system\n" + instruction,
        Special(IM_END),
        "\n",
        Special(IM_START),
        "user\n",
        *_content(item, 0),
        *_closing(),
    ]


def rerank_prompt(query: Item, document: Item, instruction: str) -> list[Segment]:
    """The reranker's prompt for one (query, document) pair."""
    return [
        Special(IM_START),
        "system\n" + RERANK_SYSTEM,
        Special(IM_END),
        "\n",
        Special(IM_START),
        "user\n<Instruct>: " + instruction + "<Query>:",
        *_content(query, 0),
        "\n<Document>:",
        *_content(document, 1),
        *_closing(),
    ]
