"""Internal (import its public names from ``qwen3_core``): the one canonical Qwen3 prompt
format, shared by every backend.

Embedding queries become ``Instruct: {instruction}\\nQuery:{query}``; documents are embedded
as they are. A reranker input is ``PREFIX + body + SUFFIX`` with the body
``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}`` (the official
transformers format: single newlines). All backends receive the token ids built here.
"""

from __future__ import annotations

DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".'
    "<|im_end|>\n<|im_start|>user\n"
)
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
# The body is tokenised in two pieces so one query's tokens can be shared by many documents.
# Splitting just before the space that precedes the document is exact: the Qwen3
# pre-tokeniser never joins ":" with a following space, and NFC never composes across it.
RERANK_HEAD_TEMPLATE = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>:"
RERANK_DOCUMENT_TEMPLATE = " {document}"

EMBEDDING_QUERY_TEMPLATE = "Instruct: {instruction}\nQuery:{query}"

YES_TOKEN = "yes"
NO_TOKEN = "no"
EMBEDDING_EOS_TOKEN = "<|endoftext|>"


def embedding_query_text(instruction: str, query: str) -> str:
    """The text the embedding model sees for a query."""
    return EMBEDDING_QUERY_TEMPLATE.format(instruction=instruction, query=query)


def rerank_body_text(instruction: str, query: str, document: str) -> str:
    """The user turn of a reranker prompt (between ``RERANK_PREFIX`` and ``RERANK_SUFFIX``)."""
    return rerank_head_text(instruction, query) + rerank_document_text(document)


def rerank_head_text(instruction: str, query: str) -> str:
    """The part of the body shared by every document of one query."""
    return RERANK_HEAD_TEMPLATE.format(instruction=instruction, query=query)


def rerank_document_text(document: str) -> str:
    """The part of the body that belongs to one document."""
    return RERANK_DOCUMENT_TEMPLATE.format(document=document)


def query_prompt_for(instruction: str | None, declared: str | None) -> tuple[str | None, str]:
    """(instruction, the text put before each query) for an embedding model: the instruction
    given; else the query prompt its checkpoint declares (a fine-tuned model's), read back
    as an instruction when it has the ``Instruct: ...\\nQuery:`` form; else the default."""
    if instruction is None and declared is not None:
        head, sep, tail = declared.partition("\nQuery:")
        if head.startswith("Instruct: ") and sep and not tail:
            return head.removeprefix("Instruct: "), declared
        return None, declared
    task = DEFAULT_INSTRUCTION if instruction is None else instruction
    return task, embedding_query_text(task, "")
