"""The LangChain adapters of the Qwen3-VL engines, on the tiny random Qwen3-VL models:
``Qwen3VLEmbeddings`` (texts, queries, ``embed_image``; LangChain's standard suites) and
``Qwen3VLRerank`` (documents carrying images by the metadata convention) give the engine's
own numbers; a round trip through Chroma finds images by text and by image, and texts by
image, in the engine's order (the tiny models' rankings are random, so the engine's ranking
is the reference)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_qwen3 import Qwen3VLEmbeddings, Qwen3VLRerank
from qwen3_core import ImageInputError, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_core.adapter_settings import VL_EMBEDDER, VL_RERANKER
from qwen3_core.testing.vl_models import VLModelPaths, build_vl_test_models
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
def embeddings(vl_embedder: Qwen3VLEmbedder) -> Qwen3VLEmbeddings:
    return Qwen3VLEmbeddings(engine=vl_embedder)


@pytest.fixture(scope="module")
def rerank(vl_reranker: Qwen3VLReranker) -> Qwen3VLRerank:
    return Qwen3VLRerank(engine=vl_reranker, top_n=None)


def test_embeddings_are_the_engines(
    embeddings: Qwen3VLEmbeddings, vl_embedder: Qwen3VLEmbedder, pictures: list[Path]
) -> None:
    assert_close(embeddings.embed_documents(TEXTS), vl_embedder.embed_documents(TEXTS))
    assert_close(embeddings.embed_query(QUERY), vl_embedder.embed_queries([QUERY])[0])
    images = vl_embedder.embed_documents(pictures)
    # A path, a base64 data address: the same image, the same vector as the engine's.
    uris = [str(pictures[0]), data_address(pictures[1]), str(pictures[2])]
    assert_close(embeddings.embed_image(uris), images[:3])
    assert embeddings.embed_image([]) == [] and embeddings.embed_documents([]) == []
    assert_close(asyncio.run(embeddings.aembed_documents(TEXTS)), embeddings.embed_documents(TEXTS))
    assert_close(asyncio.run(embeddings.aembed_query(QUERY)), embeddings.embed_query(QUERY))


def test_an_adapter_builds_its_engine_with_its_settings(
    vl_models: VLModelPaths, vl_embedder: Qwen3VLEmbedder, pictures: list[Path]
) -> None:
    small = Qwen3VLEmbeddings(model=vl_models.embedding, backend=CPU, dimensions=16)
    assert not small.engine_loaded
    vector = small.embed_image([str(pictures[0])])[0]
    full = vl_embedder.embed_documents([pictures[0]])[0]
    assert_close(vector, full[:16] / np.linalg.norm(full[:16]))


@pytest.mark.parametrize("engine_class", [Qwen3VLEmbedder, Qwen3VLReranker])
def test_settings_come_from_the_engines_spec(
    engine_class: type[Any], vl_models: VLModelPaths
) -> None:
    embedding = engine_class is Qwen3VLEmbedder
    folder = vl_models.embedding if embedding else vl_models.reranker
    engine = engine_with_other_values(engine_class, folder)
    if embedding:
        check_settings_spec(Qwen3VLEmbeddings, engine, VL_EMBEDDER)
    else:
        check_settings_spec(Qwen3VLRerank, engine, VL_RERANKER)


def test_a_wrong_engine_is_refused(vl_reranker: Qwen3VLReranker) -> None:
    with pytest.raises(ValueError, match="engine must be a Qwen3VLEmbedder, got Qwen3VLReranker"):
        Qwen3VLEmbeddings(engine=vl_reranker)


def mixed_documents(pictures: list[Path]) -> tuple[list[Document], list[Any]]:
    """Documents carrying images by each convention, and the engine inputs they stand for."""
    documents = [
        Document(page_content=TEXTS[0]),
        Document(page_content="", metadata={"image_path": str(pictures[0])}),
        Document(page_content="Figure 2", metadata={"image": b64(pictures[1]), "n": 2}),
        Document(page_content="", metadata={"image": data_address(pictures[2])}),
        Document(page_content=b64(pictures[3]), metadata={"page_content_is_image": True}),
        Document(page_content=TEXTS[1], id="t1"),
    ]
    inputs: list[Any] = [
        TEXTS[0],
        pictures[0],
        {"image": pictures[1], "text": "Figure 2"},
        pictures[2],
        pictures[3],
        TEXTS[1],
    ]
    return documents, inputs


def test_rerank_scores_documents_with_images_as_the_engine_does(
    rerank: Qwen3VLRerank, vl_reranker: Qwen3VLReranker, pictures: list[Path]
) -> None:
    documents, inputs = mixed_documents(pictures)
    before = [d.model_copy(deep=True) for d in documents]
    hits = vl_reranker.rerank(QUERY, inputs)
    got = rerank.compress_documents(documents, QUERY)
    assert [d.page_content for d in got] == [documents[h.index].page_content for h in hits]
    assert_close([d.metadata["relevance_score"] for d in got], [h.score for h in hits])
    assert_close([d.metadata["relevance_logit"] for d in got], [h.logit for h in hits])
    assert len({round(h.score, 4) for h in hits}) > 1  # the scores spread: the test can fail
    kept = next(d for d in got if d.id == "t1")
    assert kept.metadata.keys() == {"relevance_score", "relevance_logit"}
    assert documents == before  # the inputs are left as they were
    # top_n, score_threshold and the async twin keep the same scores and order.
    threshold = hits[2].score
    short = rerank.model_copy(update={"top_n": 4, "score_threshold": threshold})
    assert [d.page_content for d in short.compress_documents(documents, QUERY)] == [
        documents[h.index].page_content for h in hits[:4] if h.score >= threshold
    ]
    again = asyncio.run(rerank.acompress_documents(documents, QUERY))
    assert [d.metadata for d in again] == [d.metadata for d in got]
    assert rerank.compress_documents([], QUERY) == []


def test_bad_documents_and_images_are_named(
    rerank: Qwen3VLRerank, embeddings: Qwen3VLEmbeddings, pictures: list[Path], tmp_path: Path
) -> None:
    ok = Document(page_content="fine")
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    cases: list[tuple[Any, type[Exception], str]] = [
        ([ok, "text"], TypeError, r"documents\[1\] must be a Document, got str"),
        ([ok, Document("", metadata={"image": "not base64!"})], ImageInputError,
         r"documents\[1\]\.metadata\['image'\] is not valid base64"),
        ([Document("x", metadata={"page_content_is_image": True})], ImageInputError,
         r"documents\[0\]\.page_content is not valid base64"),
        ([ok, Document("", metadata={"image_url": "/etc/passwd"})], ImageInputError,
         r"documents\[1\]\.metadata\['image_url'\] is '/etc/passwd', not an http"),
        ([ok, Document("", metadata={"image_url": "http://127.0.0.1:9/a.png"})],
         ImageInputError, r"documents\[1\].*allow_remote_images=True"),
        ([Document("", metadata={"image_path": str(not_image)})], ImageInputError,
         r"documents\[0\]"),
        ([Document("", metadata={"image_path": 3})], TypeError,
         r"documents\[0\]\.metadata\['image_path'\] must be a str, got int"),
    ]  # fmt: skip
    for documents, error, message in cases:
        with pytest.raises(error, match=message):
            rerank.compress_documents(documents, QUERY)
    with pytest.raises(TypeError, match="uris must be a list of str, got str"):
        embeddings.embed_image(str(pictures[0]))  # type: ignore[arg-type]
    with pytest.raises(ImageInputError, match=r"^inputs\[1\]: .*notes.png"):
        embeddings.embed_image([str(pictures[0]), str(not_image)])
    with pytest.raises(ImageInputError, match=r"^inputs\[0\] .*allow_remote_images=True"):
        embeddings.embed_image(["https://127.0.0.1:9/a.png"])


def test_chroma_finds_images_by_text_and_by_image_and_texts_by_image(
    embeddings: Qwen3VLEmbeddings,
    vl_embedder: Qwen3VLEmbedder,
    rerank: Qwen3VLRerank,
    vl_reranker: Qwen3VLReranker,
    pictures: list[Path],
) -> None:
    import chromadb
    from langchain_chroma import Chroma  # the dev extra's: a store that keeps images

    client = chromadb.EphemeralClient(chromadb.config.Settings(anonymized_telemetry=False))
    store = Chroma(
        collection_name="pictures-and-texts", embedding_function=embeddings, client=client
    )
    store.add_texts(TEXTS, metadatas=[{"n": i} for i in range(len(TEXTS))])
    store.add_images(
        [str(p) for p in pictures],
        metadatas=[{"page_content_is_image": True, "n": 10 + i} for i in range(len(pictures))],
    )
    # The engine's vectors of what the store holds, in the order of the "n"s.
    stored = np.concatenate(
        [vl_embedder.embed_documents(TEXTS), vl_embedder.embed_documents(pictures)]
    )
    numbers = [*range(len(TEXTS)), *(10 + i for i in range(len(pictures)))]
    everything = len(numbers)

    def expected(query_vector: np.ndarray) -> list[int]:
        return [numbers[i] for i in ranking(stored @ query_vector)]

    by_text = store.similarity_search(QUERY, k=everything)
    assert [d.metadata["n"] for d in by_text] == expected(vl_embedder.embed_queries([QUERY])[0])
    by_image = store.similarity_search_by_image(str(pictures[2]), k=everything)
    assert [d.metadata["n"] for d in by_image] == expected(stored[len(TEXTS) + 2])
    # Texts by image: the image's vector against the texts only.
    texts_only = store.similarity_search_by_vector(
        embeddings.embed_image([str(pictures[1])])[0], k=len(TEXTS), filter={"n": {"$lt": 10}}
    )
    assert [d.metadata["n"] for d in texts_only] == [
        i for i in ranking(stored[: len(TEXTS)] @ stored[len(TEXTS) + 1])
    ]
    # What Chroma returns (images as base64 page_content) reranks as the engine ranks the files.
    reranked = rerank.compress_documents(by_text, QUERY)
    inputs = [
        pictures[d.metadata["n"] - 10] if d.metadata["n"] >= 10 else d.page_content for d in by_text
    ]
    hits = vl_reranker.rerank(QUERY, inputs)
    assert [d.metadata["n"] for d in reranked] == [by_text[h.index].metadata["n"] for h in hits]
    assert_close([d.metadata["relevance_score"] for d in reranked], [h.score for h in hits])


@pytest.mark.disable_socket  # LangChain runs unit suites offline: construction must not connect
class TestQwen3VLEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[Qwen3VLEmbeddings]:
        return Qwen3VLEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        # The real hub id, not the tiny folder: constructing loads nothing and fetches nothing.
        return {"model": "Qwen/Qwen3-VL-Embedding-2B", "dimensions": 256, "max_length": 512}


# The session engine holds the tiny weights, so each test's fresh adapter finds them in the
# engine's cache instead of loading them again.
@pytest.mark.usefixtures("vl_embedder")
class TestQwen3VLEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[Qwen3VLEmbeddings]:
        return Qwen3VLEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": str(build_vl_test_models().embedding), "backend": CPU}
