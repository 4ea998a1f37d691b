"""The LlamaIndex adapters of the Qwen3-VL engines, on the tiny random Qwen3-VL models:
``Qwen3VLEmbedding`` (texts, queries, images) and ``Qwen3VLRerank`` (``TextNode``s and
``ImageNode``s together) give the engine's own numbers; a ``MultiModalVectorStoreIndex`` on
the default ``SimpleVectorStore`` finds images by text and by image, and texts by image, in
the engine's order (the tiny models' rankings are random, so the engine's ranking is the
reference)."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode

from llamaindex_qwen3 import Qwen3VLEmbedding, Qwen3VLRerank
from qwen3_core import ImageInputError, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_core.adapter_settings import VL_EMBEDDER, VL_RERANKER
from qwen3_core.testing.vl_models import VLModelPaths
from tests import multimodal_adapters as shared
from tests.multimodal_adapters import (
    assert_close,
    b64,
    check_settings_spec,
    data_address,
    engine_with_other_values,
    ranking,
)
from tests.options import CPU

TEXTS = ["A red square on white.", "Quarterly revenue grew by 12%.", "Green hills at dawn."]
QUERY = "a chart of revenue"

vl_models, vl_embedder, vl_reranker = shared.vl_models, shared.vl_embedder, shared.vl_reranker
pictures = shared.pictures


@pytest.fixture(scope="module")
def embed_model(vl_embedder: Qwen3VLEmbedder) -> Qwen3VLEmbedding:
    return Qwen3VLEmbedding(engine=vl_embedder)


@pytest.fixture(scope="module")
def rerank(vl_reranker: Qwen3VLReranker) -> Qwen3VLRerank:
    return Qwen3VLRerank(engine=vl_reranker, top_n=10)


def test_embeddings_are_the_engines(
    embed_model: Qwen3VLEmbedding, vl_embedder: Qwen3VLEmbedder, pictures: list[Path]
) -> None:
    assert_close(embed_model.get_text_embedding_batch(TEXTS), vl_embedder.embed_documents(TEXTS))
    assert_close(embed_model.get_text_embedding(TEXTS[1]), vl_embedder.embed_documents(TEXTS)[1])
    assert_close(embed_model.get_query_embedding(QUERY), vl_embedder.embed_queries([QUERY])[0])
    images = vl_embedder.embed_documents(pictures)
    # What ImageNode.resolve_image gives: a path (str), or a BytesIO for a base64 image.
    given = [str(pictures[0]), BytesIO(pictures[1].read_bytes()), data_address(pictures[2])]
    assert_close(embed_model.get_image_embedding_batch(given), images[:3])
    assert_close(embed_model.get_image_embedding(str(pictures[3])), images[3])
    assert_close(asyncio.run(embed_model.aget_image_embedding(str(pictures[3]))), images[3])
    assert_close(
        asyncio.run(embed_model.aget_image_embedding_batch([str(p) for p in pictures])), images
    )
    assert_close(
        asyncio.run(embed_model.aget_query_embedding(QUERY)), vl_embedder.embed_queries([QUERY])[0]
    )


def test_an_adapter_builds_its_engine_with_its_settings(
    vl_models: VLModelPaths, vl_embedder: Qwen3VLEmbedder, pictures: list[Path]
) -> None:
    small = Qwen3VLEmbedding(model=vl_models.embedding, backend=CPU, dimensions=16)
    assert not small.engine_loaded and small.model_name == str(vl_models.embedding)
    full = vl_embedder.embed_documents([pictures[0]])[0]
    assert_close(small.get_image_embedding(str(pictures[0])), full[:16] / np.linalg.norm(full[:16]))


@pytest.mark.parametrize("engine_class", [Qwen3VLEmbedder, Qwen3VLReranker])
def test_settings_come_from_the_engines_spec(
    engine_class: type[Any], vl_models: VLModelPaths
) -> None:
    embedding = engine_class is Qwen3VLEmbedder
    folder = vl_models.embedding if embedding else vl_models.reranker
    engine = engine_with_other_values(engine_class, folder)
    if embedding:
        check_settings_spec(Qwen3VLEmbedding, engine, VL_EMBEDDER)
    else:
        check_settings_spec(Qwen3VLRerank, engine, VL_RERANKER)


def test_wrong_keywords_and_engines_are_type_errors(vl_embedder: Qwen3VLEmbedder) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*'top_k'"):
        Qwen3VLRerank(top_k=3)
    with pytest.raises(TypeError, match="engine must be a Qwen3VLReranker, got Qwen3VLEmbedder"):
        Qwen3VLRerank(engine=vl_embedder)


def test_the_multimodal_index_finds_images_by_text_and_by_image_and_texts_by_image(
    embed_model: Qwen3VLEmbedding, vl_embedder: Qwen3VLEmbedder, pictures: list[Path]
) -> None:
    # LlamaIndex skips nodes whose content is empty: image nodes carry a file name, as
    # SimpleDirectoryReader's do.
    texts = [TextNode(text=t, id_=f"text-{i}") for i, t in enumerate(TEXTS)]
    images = [
        ImageNode(image_path=str(p), metadata={"file_name": p.name}, id_=f"image-{i}")
        for i, p in enumerate(pictures)
    ]
    index = MultiModalVectorStoreIndex(
        [*texts, *images], embed_model=embed_model, image_embed_model=embed_model
    )
    retriever = index.as_retriever(similarity_top_k=len(TEXTS), image_similarity_top_k=4)
    text_vectors = vl_embedder.embed_documents(TEXTS)
    image_vectors = vl_embedder.embed_documents(pictures)
    query_vector = vl_embedder.embed_queries([QUERY])[0]

    by_text = retriever.text_to_image_retrieve(QUERY)
    assert [n.node.node_id for n in by_text] == [
        f"image-{i}" for i in ranking(image_vectors @ query_vector)
    ]
    assert_close([n.score for n in by_text], np.sort(image_vectors @ query_vector)[::-1])
    by_image = retriever.image_to_image_retrieve(str(pictures[1]))
    assert [n.node.node_id for n in by_image] == [
        f"image-{i}" for i in ranking(image_vectors @ image_vectors[1])
    ]
    # Texts by image: the image's vector as the query of the text store.
    texts_by_image = retriever.text_retrieve(
        QueryBundle(query_str="", embedding=embed_model.get_image_embedding(str(pictures[2])))
    )
    assert [n.node.node_id for n in texts_by_image] == [
        f"text-{i}" for i in ranking(text_vectors @ image_vectors[2])
    ]
    # A plain retrieve: texts then images, each by the text query.
    both = retriever.retrieve(QUERY)
    assert [n.node.node_id for n in both] == [
        *(f"text-{i}" for i in ranking(text_vectors @ query_vector)),
        *(n.node.node_id for n in by_text),
    ]


def mixed_nodes(pictures: list[Path]) -> tuple[list[NodeWithScore], list[Any]]:
    """Text and image nodes by each way an ImageNode holds its image, and the engine inputs
    they stand for."""
    nodes = [
        TextNode(text=TEXTS[0], metadata={"source": "a"}),
        ImageNode(image_path=str(pictures[0]), metadata={"file_name": "p0"}),
        ImageNode(image=b64(pictures[1]), text="Figure 2"),
        ImageNode(image_url=data_address(pictures[2])),
        ImageNode(image=b64(pictures[3]), image_path="/nowhere.png"),  # image wins
        TextNode(text=TEXTS[1]),
    ]
    inputs: list[Any] = [
        "source: a\n\n" + TEXTS[0],  # the EMBED view Qwen3Rerank scores
        pictures[0],
        {"image": pictures[1], "text": "Figure 2"},
        pictures[2],
        pictures[3],
        TEXTS[1],
    ]
    scored = [NodeWithScore(node=n, score=0.5 + i / 10) for i, n in enumerate(nodes)]
    return scored, inputs


def test_rerank_scores_text_and_image_nodes_as_the_engine_does(
    rerank: Qwen3VLRerank, vl_reranker: Qwen3VLReranker, pictures: list[Path]
) -> None:
    nodes, inputs = mixed_nodes(pictures)
    before = [n.model_copy(deep=True) for n in nodes]
    hits = vl_reranker.rerank(QUERY, inputs)
    got = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in got] == [nodes[h.index].node.node_id for h in hits]
    assert_close([n.score for n in got], [h.score for h in hits])
    assert_close([n.node.metadata["relevance_logit"] for n in got], [h.logit for h in hits])
    assert len({round(h.score, 4) for h in hits}) > 1  # the scores spread: the test can fail
    for node in got:  # the log-odds are kept out of what the models see
        assert "relevance_logit" in node.node.excluded_embed_metadata_keys
        assert "relevance_logit" in node.node.excluded_llm_metadata_keys
    assert [n.model_dump() for n in nodes] == [n.model_dump() for n in before]
    # top_n, keep_retrieval_score and the async twin keep the same scores and order.
    short = rerank.model_copy(update={"top_n": 2, "keep_retrieval_score": True})
    top = short.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.metadata["retrieval_score"] for n in top] == [
        nodes[h.index].score for h in hits[:2]
    ]
    again = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    assert [n.score for n in again] == [n.score for n in got]
    assert rerank.postprocess_nodes([], query_str=QUERY) == []


def test_an_image_query_reranks_as_the_engine_does(
    rerank: Qwen3VLRerank, vl_reranker: Qwen3VLReranker, pictures: list[Path]
) -> None:
    nodes, inputs = mixed_nodes(pictures)
    bundle = QueryBundle(query_str="like this one", image_path=str(pictures[0]))
    hits = vl_reranker.rerank({"image": pictures[0], "text": "like this one"}, inputs)
    got = rerank.postprocess_nodes(nodes, query_bundle=bundle)
    assert_close([n.score for n in got], [h.score for h in hits])


class _OnePicture(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def picture_server(pictures: list[Path]) -> Iterator[str]:
    handler = type("Handler", (_OnePicture,), {"body": pictures[0].read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/picture.png"
    server.shutdown()
    server.server_close()


def test_an_image_url_is_fetched_only_when_the_engine_allows_it(
    rerank: Qwen3VLRerank,
    vl_models: VLModelPaths,
    vl_reranker: Qwen3VLReranker,
    pictures: list[Path],
    picture_server: str,
) -> None:
    nodes = [
        NodeWithScore(node=ImageNode(image_url=picture_server)),
        NodeWithScore(node=TextNode(text="x")),
    ]
    with pytest.raises(ImageInputError, match=r"^documents\[0\].*allow_remote_images=True"):
        rerank.postprocess_nodes(nodes, query_str=QUERY)
    remote = Qwen3VLRerank(model=vl_models.reranker, backend=CPU, allow_remote_images=True)
    got = remote.postprocess_nodes(nodes, query_str=QUERY)
    want = vl_reranker.score(QUERY, [pictures[0], "x"])
    assert_close(sorted(n.score for n in got), sorted(want))


def test_bad_nodes_and_images_are_named(
    rerank: Qwen3VLRerank, embed_model: Qwen3VLEmbedding, tmp_path: Path
) -> None:
    ok = NodeWithScore(node=TextNode(text="fine"))
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    cases: list[tuple[Any, type[Exception], str]] = [
        ([ok, TextNode(text="bare")], TypeError, r"nodes\[1\] must be a NodeWithScore"),
        ([ok, NodeWithScore(node=ImageNode(text="caption only"))], ValueError,
         r"nodes\[1\] is an ImageNode with no image, image_path or image_url"),
        ([NodeWithScore(node=ImageNode(image="not base64!"))], ImageInputError,
         r"nodes\[0\]\['image'\] is not valid base64"),
        ([NodeWithScore(node=ImageNode(image_url="file:///etc/passwd"))], ImageInputError,
         r"nodes\[0\]\['image_url'\] is 'file:///etc/passwd', not an http"),
        ([ok, NodeWithScore(node=ImageNode(image_path=str(not_image)))], ImageInputError,
         r"^documents\[1\].*notes\.png"),
    ]  # fmt: skip
    for nodes, error, message in cases:
        with pytest.raises(error, match=message):
            rerank.postprocess_nodes(nodes, query_str=QUERY)
    with pytest.raises(ValueError, match="needs a query"):
        rerank.postprocess_nodes([ok])
    with pytest.raises(TypeError, match=r"img_file_paths\[1\] must be a file path"):
        embed_model.get_image_embedding_batch(["a.png", 3])  # type: ignore[list-item]
    with pytest.raises(ImageInputError, match=r"img_file_paths\[0\]\['image_url'\].*not valid"):
        embed_model.get_image_embedding_batch(["data:image/png;base64,@@"])
    with pytest.raises(ImageInputError, match=r"^inputs\[0\].*notes\.png"):
        embed_model.get_image_embedding(str(not_image))
