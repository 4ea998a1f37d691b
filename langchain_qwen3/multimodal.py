"""Internal (import its public names from ``langchain_qwen3``): ``Qwen3VLEmbeddings`` and
``Qwen3VLRerank``: Qwen3-VL-Embedding as a LangChain ``Embeddings`` that also embeds images,
and Qwen3-VL-Reranker as a document compressor for documents that carry images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document

from langchain_qwen3._common import page_contents
from langchain_qwen3.embeddings import TextEmbeddings
from langchain_qwen3.rerank import DocumentRerank
from qwen3_core.adapter_settings import VLEmbedderSettings, VLRerankerSettings
from qwen3_core.multimodal.documents import decode_base64, document_input
from qwen3_core.multimodal.inputs import MultimodalInput
from qwen3_core.validation import check_text

IMAGE_KEY = "image"
"""``metadata["image"]``: the document's image in base64 (or a ``data:`` address)."""
IMAGE_PATH_KEY = "image_path"
"""``metadata["image_path"]``: the document's image file."""
IMAGE_URL_KEY = "image_url"
"""``metadata["image_url"]``: the document's image at an ``http(s)://`` address (fetched only
when the engine allows remote images)."""
PAGE_CONTENT_IS_IMAGE_KEY = "page_content_is_image"
"""``metadata["page_content_is_image"]`` true: ``page_content`` is the image in base64, as
Chroma's ``add_images`` stores it; the document then has no text."""


def document_inputs(documents: Any) -> list[MultimodalInput]:
    """The engine input of each document: its image (see ``Qwen3VLRerank``) with its
    ``page_content`` as text, or its ``page_content`` alone. Errors name
    ``documents[i]``."""
    page_contents(documents)  # a TypeError names the first item that is not a Document
    inputs: list[MultimodalInput] = []
    for index, document in enumerate(documents):
        label = f"documents[{index}]"
        metadata = document.metadata
        if metadata.get(PAGE_CONTENT_IS_IMAGE_KEY):
            image = decode_base64(document.page_content, f"{label}.page_content")
            inputs.append({"image": image})
            continue
        inputs.append(
            document_input(
                check_text(f"{label}.page_content", document.page_content),
                image=metadata.get(IMAGE_KEY),
                image_path=metadata.get(IMAGE_PATH_KEY),
                image_url=metadata.get(IMAGE_URL_KEY),
                label=f"{label}.metadata",
            )
        )
    return inputs


def _is_address(uri: str) -> bool:
    return uri.lstrip()[:8].lower().startswith(("http://", "https://", "data:"))


def image_inputs(uris: Any) -> list[MultimodalInput]:
    """``embed_image``'s uris as engine inputs: a file path, an ``http(s)://`` address, or a
    base64 ``data:`` address each. Errors name ``uris[i]``."""
    if isinstance(uris, (str, bytes)) or not isinstance(uris, Sequence):
        raise TypeError(f"uris must be a list of str, got {type(uris).__name__}")
    return [
        document_input(None, image_url=uri, label=f"uris[{index}]")
        if isinstance(uri, str) and _is_address(uri)
        else document_input(None, image_path=uri, label=f"uris[{index}]")
        for index, uri in enumerate(uris)
    ]


class Qwen3VLEmbeddings(VLEmbedderSettings, TextEmbeddings):
    """Qwen3-VL-Embedding through ``qwen3_core.Qwen3VLEmbedder``: texts and images in one
    space, so a text query finds images and an image finds texts. Documents (texts and
    images) get the official "Represent the user's input."; text queries get
    ``query_instruction``. Vectors are unit length. A str given to ``embed_documents`` is
    always text, never a file.

    ``embed_image(uris)`` is the method ``OpenCLIPEmbeddings`` has, which vector stores call
    for images: Chroma's ``add_images`` and ``similarity_search_by_image`` use it.

    ```python
    from langchain_qwen3 import Qwen3VLEmbeddings

    emb = Qwen3VLEmbeddings(model="Qwen/Qwen3-VL-Embedding-2B")
    image_vectors = emb.embed_image(["page-1.png", "page-2.png"])
    query_vector = emb.embed_query("revenue chart for 2024")
    ```

    Constructing it loads nothing and touches no network: the engine is built on first use.
    ``engine=Qwen3VLEmbedder(...)`` uses a ready engine: the settings it fixes (``model``,
    ``backend``, ...: each field says) are then read from it, and giving any of them as well
    is an error; ``query_instruction`` is the engine's unless given.
    """

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """One unit vector per image, in input order, embedded as documents are. Each uri is
        a file path, a base64 ``data:`` address, or an ``http(s)://`` address (fetched only
        with ``allow_remote_images=True``).

        Raises:
            TypeError: ``uris`` is not a list of str.
            ImageInputError: An image cannot be used; the message names it (``uris[i]``).
        """
        inputs = image_inputs(uris)
        if not inputs:
            return []
        vectors: list[list[float]] = self.engine.embed_documents(inputs).tolist()
        return vectors


class Qwen3VLRerank(VLRerankerSettings, DocumentRerank):
    """Reorders retrieved documents, texts and images together, by Qwen3-VL-Reranker's
    judgement, best first.

    A document's image is, in this order: ``page_content`` in base64 when
    ``metadata["page_content_is_image"]`` is true (as Chroma's ``add_images`` stores images:
    pass that metadata to it); else ``metadata["image"]`` (base64, or a ``data:`` address),
    ``metadata["image_path"]`` (a file), ``metadata["image_url"]`` (an ``http(s)://``
    address, fetched only with ``allow_remote_images=True``). A document with an image is
    judged as the image followed by its ``page_content`` as text (none if empty); one
    without is its ``page_content``, as ``Qwen3Rerank`` judges it.

    The returned documents are copies of the inputs, as ``Qwen3Rerank`` returns them: with
    ``metadata["relevance_score"]`` = P(yes) and ``metadata["relevance_logit"]`` = its
    log-odds, best first by log-odds (ties keep input order), at most ``top_n``, none under
    ``score_threshold``.

    ```python
    from langchain_qwen3 import Qwen3VLRerank

    rerank = Qwen3VLRerank(model="Qwen/Qwen3-VL-Reranker-2B", top_n=3)
    best = rerank.compress_documents(documents, "revenue chart for 2024")
    ```

    ``engine=Qwen3VLReranker(...)`` uses a ready engine: the settings it fixes are then read
    from it, and giving any of them as well is an error; ``instruction`` is the engine's
    unless given.
    """

    def _inputs(self, documents: Sequence[Document]) -> list[Any]:
        return document_inputs(documents)
