"""Internal (import its public names from ``llamaindex_qwen3``): ``Qwen3VLEmbedding`` and
``Qwen3VLRerank``: Qwen3-VL-Embedding as a LlamaIndex ``MultiModalEmbedding`` and
Qwen3-VL-Reranker as a node postprocessor for text and image nodes together."""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from typing import Any

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageNode, ImageType, MetadataMode, NodeWithScore, QueryBundle

from llamaindex_qwen3._common import KeywordChecks
from llamaindex_qwen3.embedding import TextEmbedding
from llamaindex_qwen3.rerank import NodeRerank, check_nodes
from qwen3_core.adapter_settings import NamedVLEmbedderSettings, VLRerankerSettings
from qwen3_core.defaults import EMBED_BATCH_SIZE, MAX_EMBED_BATCH_SIZE
from qwen3_core.multimodal.documents import document_input
from qwen3_core.multimodal.inputs import MultimodalInput
from qwen3_core.validation import check_text


def _image_input(image: Any, label: str) -> MultimodalInput:
    """One of LlamaIndex's ``ImageType``: a file path, an ``http(s)://`` or base64 ``data:``
    address (what ``ImageNode.resolve_image`` gives), or the image's bytes in a ``BytesIO``."""
    if isinstance(image, BytesIO):
        data = image.getvalue()
        if not data:
            raise ValueError(f"{label} is an empty BytesIO, not an image")
        return {"image": data}
    if not isinstance(image, str):
        raise TypeError(
            f"{label} must be a file path, an address or a BytesIO, got {type(image).__name__}"
        )
    if image.lstrip()[:8].lower().startswith(("http://", "https://", "data:")):
        return document_input(None, image_url=image, label=label)
    return document_input(None, image_path=image, label=label)


def _image_inputs(images: Any, name: str) -> list[MultimodalInput]:
    if isinstance(images, (str, bytes, BytesIO)) or not isinstance(images, Sequence):
        raise TypeError(f"{name} must be a list of images, got {type(images).__name__}")
    return [_image_input(image, f"{name}[{index}]") for index, image in enumerate(images)]


class Qwen3VLEmbedding(NamedVLEmbedderSettings, KeywordChecks, TextEmbedding, MultiModalEmbedding):
    """Qwen3-VL-Embedding through ``qwen3_core.Qwen3VLEmbedder``, as a LlamaIndex
    ``MultiModalEmbedding``: texts and images in one space, so a text query finds images
    and an image finds texts. Texts (nodes) and images get the official "Represent the
    user's input."; text queries get ``query_instruction``. Vectors are unit length.

    Give it as both ``embed_model`` and ``image_embed_model`` of a
    ``MultiModalVectorStoreIndex``, so that text and image nodes share its space:

    ```python
    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llamaindex_qwen3 import Qwen3VLEmbedding

    embed_model = Qwen3VLEmbedding(model="Qwen/Qwen3-VL-Embedding-2B")
    index = MultiModalVectorStoreIndex(
        nodes, embed_model=embed_model, image_embed_model=embed_model
    )
    ```

    An image is a file path, an ``http(s)://`` address (fetched only with
    ``allow_remote_images=True``), a base64 ``data:`` address, or a ``BytesIO`` of the
    file's bytes (what ``ImageNode.resolve_image`` gives for a base64 ``image``).

    It takes keyword arguments, as LlamaIndex's classes do; any other name, or an engine of
    the wrong class, is a ``TypeError``. ``engine=Qwen3VLEmbedder(...)`` uses a ready engine:
    the settings it fixes are then read from it, and giving any of them as well is an error;
    ``query_instruction`` is the engine's unless given.
    """

    embed_batch_size: int = Field(default=EMBED_BATCH_SIZE, gt=0, le=MAX_EMBED_BATCH_SIZE)
    """Texts or images per engine call (not LlamaIndex's 10): the engine batches them by
    tokens itself."""

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3VLEmbedding"

    # Texts and queries as Qwen3Embedding takes them (TextEmbedding); images here.
    def get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        _image_input(img_file_path, "img_file_path")
        return super().get_image_embedding(img_file_path)

    async def aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        _image_input(img_file_path, "img_file_path")
        return await super().aget_image_embedding(img_file_path)

    def get_image_embedding_batch(
        self, img_file_paths: list[ImageType], show_progress: bool = False
    ) -> list[Embedding]:
        _image_inputs(img_file_paths, "img_file_paths")
        return super().get_image_embedding_batch(img_file_paths, show_progress)

    async def aget_image_embedding_batch(
        self, img_file_paths: list[ImageType], show_progress: bool = False
    ) -> list[Embedding]:
        _image_inputs(img_file_paths, "img_file_paths")
        return await super().aget_image_embedding_batch(img_file_paths, show_progress)

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        inputs = _image_inputs(img_file_paths, "img_file_paths")
        vectors: list[Embedding] = self.engine.embed_documents(inputs).tolist()
        return vectors

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return (await self._aget_image_embeddings([img_file_path]))[0]

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        inputs = _image_inputs(img_file_paths, "img_file_paths")
        engine = await self._engine.aget()
        vectors: list[Embedding] = (await engine.aembed_documents(inputs)).tolist()
        return vectors


def node_inputs(nodes: Any) -> list[MultimodalInput]:
    """The engine input of each node: a text node's text as ``Qwen3Rerank`` scores it
    (``get_content(metadata_mode=MetadataMode.EMBED)``); an ``ImageNode``'s image (its
    ``image`` (base64), else ``image_path``, else ``image_url``, the order of
    ``ImageNode.resolve_image``), followed by that text when the node has a text."""
    check_nodes(nodes)
    inputs: list[MultimodalInput] = []
    for index, scored in enumerate(nodes):
        label = f"nodes[{index}]"
        node = scored.node
        text = check_text(label, node.get_content(metadata_mode=MetadataMode.EMBED))
        if not isinstance(node, ImageNode):
            inputs.append(text)
            continue
        if node.image is None and node.image_path is None and node.image_url is None:
            raise ValueError(f"{label} is an ImageNode with no image, image_path or image_url")
        inputs.append(
            document_input(
                text if node.text else None,
                image=node.image,
                image_path=node.image_path,
                image_url=node.image_url,
                label=label,
            )
        )
    return inputs


class Qwen3VLRerank(VLRerankerSettings, KeywordChecks, NodeRerank):
    """Reranks retrieved text and image nodes together with ``qwen3_core.Qwen3VLReranker``,
    keeping ``Qwen3Rerank``'s conventions: each returned node's score is P(yes), its
    ``metadata["relevance_logit"]`` the log-odds, of which P(yes) is the sigmoid; best first
    by log-odds (ties keep retrieval order), at most ``top_n``.

    A ``TextNode`` is judged on its text as ``Qwen3Rerank`` judges it
    (``get_content(metadata_mode=MetadataMode.EMBED)``). An ``ImageNode`` is judged on its
    image, ``image`` (base64) else ``image_path`` else ``image_url`` (as
    ``ImageNode.resolve_image`` picks; an address is fetched only with
    ``allow_remote_images=True``), followed by that text when the node has a text (a
    caption). The query is ``query_str``; a ``QueryBundle`` with an ``image_path`` queries
    with that image (and ``query_str``, if not empty).

    ```python
    from llamaindex_qwen3 import Qwen3VLRerank

    rerank = Qwen3VLRerank(model="Qwen/Qwen3-VL-Reranker-2B", top_n=3)
    best = rerank.postprocess_nodes(retriever.retrieve("revenue chart"), query_str="revenue chart")
    ```

    The returned nodes are new, around copies of the given ones, which are left as they
    were; the callback and instrumentation events are those ``Qwen3Rerank`` emits.

    It takes keyword arguments; any other name, or an engine of the wrong class, is a
    ``TypeError``. ``engine=Qwen3VLReranker(...)`` uses a ready engine: the settings it
    fixes are then read from it, and giving any of them as well is an error;
    ``instruction`` is the engine's unless given.
    """

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3VLRerank"

    def _checked(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[MultimodalInput, list[MultimodalInput]]:
        if query_bundle is None:
            raise self._no_query()
        inputs = node_inputs(nodes)
        text = check_text("query_str", query_bundle.query_str)
        query: MultimodalInput = text
        if query_bundle.image_path is not None:
            query = document_input(
                text or None, image_path=query_bundle.image_path, label="query_bundle"
            )
        return query, inputs
