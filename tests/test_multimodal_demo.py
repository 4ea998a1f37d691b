"""``qwen3-rag demo --images DIR``: a folder of images and text files searched in two stages
with the Qwen3-VL models, as the installed command runs it, on the tiny random models."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_core import Qwen3VLEmbedder, Qwen3VLReranker, TransformersOptions
from qwen3_core.cli.main import main
from qwen3_core.demo.images import MultimodalSearch, read_image_folder
from qwen3_core.testing import ModelPaths, VLModelPaths, build_vl_test_models

QWEN3_RAG = Path(sys.executable).with_name("qwen3-rag")
CPU = TransformersOptions(device="cpu")


@pytest.fixture(scope="module")
def vl_models() -> VLModelPaths:
    return build_vl_test_models()


def _noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, len(mode)), np.uint8)
    return Image.fromarray(pixels, mode)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three images (one in a subfolder, one with transparency), a text file, a file of
    another kind and a hidden file."""
    root = tmp_path / "pictures"
    (root / "slides").mkdir(parents=True)
    _noise(320, 240, 1).save(root / "chart.png")
    _noise(200, 300, 2).save(root / "slides" / "page-1.jpg")
    _noise(64, 64, 3, "RGBA").save(root / "logo.png")
    (root / "notes.txt").write_text("Quarterly revenue grew by 12 percent.", encoding="utf-8")
    (root / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (root / ".hidden.png").write_bytes(b"not read")
    return root


def test_folder_lists_images_and_texts_by_path(folder: Path) -> None:
    found = read_image_folder(folder)
    assert found.corpus.labels == ["chart.png", "logo.png", "notes.txt", "slides/page-1.jpg"]
    assert found.inputs == [
        folder / "chart.png",
        folder / "logo.png",
        "Quarterly revenue grew by 12 percent.",
        folder / "slides" / "page-1.jpg",
    ]
    assert found.corpus.documents[0] == "[image 320 x 240]"
    assert found.skipped == 1  # data.csv; the hidden file is not counted


def test_search_is_the_engines_two_stages(folder: Path, vl_models: VLModelPaths) -> None:
    embedder = Qwen3VLEmbedder(vl_models.embedding, backend=CPU)
    reranker = Qwen3VLReranker(vl_models.reranker, backend=CPU)
    found = read_image_folder(folder)
    search = MultimodalSearch(embedder, reranker)
    search.index(found.inputs, found.corpus.documents)
    query = "a chart of revenue"
    outcome = search.search(query, top_k=3, top_n=2)

    # The same two stages, one input at a time.
    vectors = np.stack([embedder.embed_documents([item])[0] for item in found.inputs])
    similarity = vectors @ embedder.embed_queries([query])[0]
    top3 = list(np.argsort(-similarity, kind="stable")[:3])
    logits = np.array([reranker.logits(query, [found.inputs[i]])[0] for i in top3])
    best = list(np.argsort(-logits, kind="stable")[:2])
    assert [hit.document_id for hit in outcome.hits] == [top3[i] for i in best]
    assert [hit.original_rank for hit in outcome.hits] == [i + 1 for i in best]
    for hit, i in zip(outcome.hits, best, strict=True):
        assert hit.rerank_logit == pytest.approx(logits[i], abs=1e-4)
        assert hit.rerank_score == pytest.approx(1 / (1 + np.exp(-logits[i])), abs=1e-5)
        assert hit.embedding_score == pytest.approx(similarity[top3[i]], abs=1e-5)
    assert outcome.candidates == 3


def test_console_script_ranks_the_folders_files(folder: Path, vl_models: VLModelPaths) -> None:
    result = subprocess.run(
        [
            str(QWEN3_RAG),
            "demo",
            "--tiny",
            "--images",
            str(folder),
            "--query",
            "a chart of revenue",
            "--query",
            "company logo",
            "--top-k",
            "4",
            "--top-n",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "the ranking is random" in out
    assert "Embedded 3 images and 1 text file in" in out and "1 other file left out" in out
    assert out.count("top 4 of 4 documents") == 2
    rows = re.findall(r"^\s+[123]\s+(\S+)\s+([\d.]+)\s+(-?[\d.]+)\s", out, re.M)
    assert len(rows) == 6
    names = {"chart.png", "logo.png", "notes.txt", "slides/page-1.jpg"}
    assert {name for name, _, _ in rows} <= names
    for _, relevance, _ in rows:
        assert 0.0 <= float(relevance) <= 1.0
    assert "[image 320 x 240]" in out or "Quarterly revenue" in out
    # Nothing on stderr: no warning, no progress bar.
    assert result.stderr == ""


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--corpus", "x.txt"], "--images and --corpus cannot be combined"),
        ([], "--images needs a query"),
        (["--query", "q", "--long-documents", "chunk"], "settings of the text reranker"),
        (["--query", "q", "--backend", "openvino"], "--backend transformers"),
        (["--query", "q", "--top-n", "9"], "cannot be more than --top-k"),
    ],
)
def test_bad_arguments_are_one_line(
    folder: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--tiny", "--images", str(folder), *extra]) == 2
    assert message in _error(capsys)


def test_bad_folders_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tiny", "--images", str(tmp_path / "nowhere"), "--query", "q"]) == 2
    assert "does not exist" in _error(capsys)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "data.csv").write_text("a,b")
    assert main(["demo", "--tiny", "--images", str(tmp_path / "empty"), "--query", "q"]) == 2
    assert "holds no image or text file" in _error(capsys)
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "notes.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert main(["demo", "--tiny", "--images", str(tmp_path / "latin1"), "--query", "q"]) == 2
    assert "notes.txt' is not UTF-8 text" in _error(capsys)


def test_broken_image_is_named(
    folder: Path, vl_models: VLModelPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert main(["demo", "--tiny", "--images", str(folder), "--query", "q"]) == 2
    assert "broken.png" in _error(capsys)


def test_text_model_is_refused_by_name(
    folder: Path, test_models: ModelPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--images", str(folder), "--query", "q"]
    models = ["--embedding-model", str(test_models.embedding)]
    assert main([*args, *models, "--reranker-model", str(test_models.reranker)]) == 2
    assert "is a text Qwen3 model" in _error(capsys)
