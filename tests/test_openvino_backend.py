"""backend="openvino": qwen3-rag's decoder converted to OpenVINO and run by its CPU plugin.
Every checkpoint variant scores the official formula (tests/test_checkpoint_variants.py); the
conversion is kept on disk and reused; bad settings and uncovered checkpoints are refused by
name."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from qwen3_core import ModelKindError, Qwen3Embedder, Qwen3Reranker
from qwen3_core.backend_options import OpenVINOOptions
from qwen3_core.backends.openvino import MODEL_FILE
from qwen3_core.testing import (
    CACHE_VARIABLE,
    ModelPaths,
    models_cache_folder,
)
from tests.options import CPU

pytest.importorskip("openvino")

QUERY = "What is the capital of China?"
WEIGHTS_FILE = Path(MODEL_FILE).with_suffix(".bin").name


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def options(cache: Path) -> OpenVINOOptions:
    return OpenVINOOptions(cache_folder=cache)


def _converted(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if (p / MODEL_FILE).is_file())


def test_agrees_with_the_transformers_backend(
    test_models: ModelPaths, options: OpenVINOOptions, corpus: list[str]
) -> None:
    texts = [*corpus, "x", "a longer text " * 40]
    openvino = Qwen3Embedder(test_models.embedding, backend=options)
    torch_cpu = Qwen3Embedder(test_models.embedding, backend=CPU)
    np.testing.assert_allclose(
        openvino.embed_documents(texts), torch_cpu.embed_documents(texts), atol=1e-4, rtol=0
    )
    # Queries with the checkpoint's own query prompt, as the default backend embeds them.
    queries = ["capital of China", "rivers"]
    np.testing.assert_allclose(
        openvino.embed_queries(queries), torch_cpu.embed_queries(queries), atol=1e-4, rtol=0
    )
    ranked = Qwen3Reranker(test_models.reranker, backend=options).rerank(QUERY, corpus)
    want = Qwen3Reranker(test_models.reranker, backend=CPU).rerank(QUERY, corpus)
    assert [r.index for r in ranked] == [r.index for r in want]


def test_conversion_is_kept_and_reused(
    test_models: ModelPaths,
    tmp_path: Path,
    corpus: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(test_models.embedding, folder)
    cache = tmp_path / "cache"
    options = OpenVINOOptions(cache_folder=cache)
    first = Qwen3Embedder(folder, backend=options)
    want = first.embed_documents(corpus)
    assert capfd.readouterr() == ("", "")  # converting prints nothing
    (converted,) = _converted(cache)
    written = (converted / MODEL_FILE).stat().st_mtime_ns
    # Engines alive at once share the compiled model.
    assert Qwen3Embedder(folder, backend=options).loaded_model is first.loaded_model
    first.close()
    del first
    again = Qwen3Embedder(folder, backend=options)
    np.testing.assert_array_equal(again.embed_documents(corpus), want)
    assert _converted(cache) == [converted]
    assert (converted / MODEL_FILE).stat().st_mtime_ns == written
    # The key is the checkpoint's content: a touched file or a copy elsewhere reuses it.
    (folder / "model.safetensors").touch()
    shutil.copytree(folder, tmp_path / "copy")
    Qwen3Embedder(tmp_path / "copy", backend=options)
    assert _converted(cache) == [converted]
    assert (converted / MODEL_FILE).stat().st_mtime_ns == written
    # No half-written folder is left behind.
    assert not [p for p in cache.iterdir() if p.is_dir() and p.name.startswith(".")]


def test_threads_loading_at_once_convert_once(test_models: ModelPaths, tmp_path: Path) -> None:
    options = OpenVINOOptions(cache_folder=tmp_path)
    with ThreadPoolExecutor(3) as pool:
        engines = list(
            pool.map(lambda _: Qwen3Reranker(test_models.reranker, backend=options), range(3))
        )
    assert len({id(e.loaded_model) for e in engines}) == 1
    assert len(_converted(tmp_path)) == 1


@dataclass
class Pristine:
    """A checkpoint, its conversion (each test damages a copy of the cache folder) and the
    transformers backend's scores."""

    model: Path
    cache: Path
    want: np.ndarray


@pytest.fixture(scope="module")
def pristine(
    test_models: ModelPaths, tmp_path_factory: pytest.TempPathFactory, corpus: list[str]
) -> Pristine:
    root = tmp_path_factory.mktemp("pristine")
    model = root / "model"
    shutil.copytree(test_models.reranker, model)
    Qwen3Reranker(model, backend=OpenVINOOptions(cache_folder=root / "cache")).close()
    want = Qwen3Reranker(model, backend=CPU).score(QUERY, corpus)
    return Pristine(model, root / "cache", want)


def _damage(weights: Path, how: str) -> None:
    """Damage the converted weights in place, as a disk, a crash or a stray write would."""
    if how == "missing":
        weights.unlink()
        return
    if how == "truncated":
        os.truncate(weights, weights.stat().st_size // 2)
        return
    data = bytearray(weights.read_bytes())
    if how == "scaled":
        # 64 floats of the last layer's down projection: every score depends on them.
        layers = ElementTree.parse(weights.with_suffix(".xml")).iterfind(".//layer[@type='Const']")
        (*_, last) = (
            layer.find("data")
            for layer in layers
            if layer.attrib["name"].endswith("down_proj.weight")
        )
        assert last is not None and last.attrib["element_type"] == "f32"
        floats = np.frombuffer(data, dtype="<f4", count=64, offset=int(last.attrib["offset"]))
        floats *= 4
    else:  # 2,000 bytes flipped
        positions = np.random.default_rng(0).choice(len(data), 2000, replace=False)
        view = np.frombuffer(data, dtype=np.uint8)
        view[positions] ^= 0xFF
    with weights.open("r+b") as file:  # the same file, the same size
        file.write(data)


@pytest.mark.parametrize("how", ["scaled", "flipped", "truncated", "missing"])
def test_a_damaged_conversion_is_converted_again(
    how: str,
    pristine: Pristine,
    tmp_path: Path,
    corpus: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(pristine.cache, cache)
    (target,) = _converted(cache)
    weights = target / WEIGHTS_FILE
    _damage(weights, how)
    caplog.set_level(logging.WARNING, logger="qwen3_core")
    engine = Qwen3Reranker(pristine.model, backend=OpenVINOOptions(cache_folder=cache))
    np.testing.assert_allclose(engine.score(QUERY, corpus), pristine.want, atol=1e-4, rtol=0)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("qwen3_core")]
    assert len(lines) == 1 and f"'{weights}'" in lines[0], lines
    assert _converted(cache) == [target]
    assert not [p for p in cache.iterdir() if p.is_dir() and p.name.startswith(".")]


_SCORE_SCRIPT = """
import json, logging, sys
import torch
torch.set_num_threads(1)
logging.basicConfig(format="%(name)s: %(message)s")
from qwen3_core import OpenVINOOptions, Qwen3Reranker
model, cache, query, documents = sys.argv[1:]
engine = Qwen3Reranker(model, backend=OpenVINOOptions(cache_folder=cache))
print(json.dumps(engine.score(query, json.loads(documents)).tolist()))
"""


def test_processes_finding_one_damaged_conversion_convert_it_once(
    pristine: Pristine, tmp_path: Path, corpus: list[str]
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(pristine.cache, cache)
    (target,) = _converted(cache)
    _damage(target / WEIGHTS_FILE, "flipped")
    arguments = [str(pristine.model), str(cache), QUERY, json.dumps(corpus)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _SCORE_SCRIPT, *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [process.communicate(timeout=600) for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in results]
    for out, _ in results:
        np.testing.assert_allclose(json.loads(out), pristine.want, atol=1e-4, rtol=0)
    lines = [line for _, err in results for line in err.splitlines() if "qwen3_core:" in line]
    assert len(lines) == 1 and f"'{target / WEIGHTS_FILE}'" in lines[0], lines
    assert _converted(cache) == [target]


def _scale_final_norm(checkpoint: Path, factor: float) -> None:
    """Rewrite the safetensors file with its final norm scaled: the same size, other scores."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    with safe_open(checkpoint, "pt") as file:
        metadata = file.metadata()
    tensors = load_file(checkpoint)
    (name,) = [n for n in tensors if n.endswith("norm.weight") and "layers." not in n]
    tensors[name] = tensors[name] * factor
    data = save(tensors, metadata=metadata)
    assert len(data) == checkpoint.stat().st_size
    with checkpoint.open("r+b") as out:
        out.write(data)


def test_a_checkpoint_rewritten_at_its_size_and_time_is_converted_anew(
    test_models: ModelPaths, tmp_path: Path, corpus: list[str]
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(test_models.reranker, folder)
    options = OpenVINOOptions(cache_folder=tmp_path / "cache")
    checkpoint = folder / "model.safetensors"
    old = Qwen3Reranker(folder, backend=options)
    before = old.score(QUERY, corpus)
    # A file whose change time is a few seconds old has its digest remembered by its identity:
    # wait for that, so that the load below takes the remembered path.
    settled = checkpoint.stat().st_ctime_ns / 1e9 + 3
    time.sleep(max(0.0, settled - time.time()))
    Qwen3Reranker(folder, backend=options).close()
    old.close()
    stat = checkpoint.stat()
    _scale_final_norm(checkpoint, 1.5)
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (checkpoint.stat().st_size, checkpoint.stat().st_mtime_ns) == (
        stat.st_size,
        stat.st_mtime_ns,
    )
    got = Qwen3Reranker(folder, backend=options).score(QUERY, corpus)
    want = Qwen3Reranker(folder, backend=CPU).score(QUERY, corpus)
    assert np.abs(want - before).max() > 1e-2  # the rewrite changed the scores
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert len(_converted(tmp_path / "cache")) == 2


def test_threads_scoring_at_once_get_their_own_results(
    test_models: ModelPaths, options: OpenVINOOptions, corpus: list[str]
) -> None:
    engine = Qwen3Reranker(test_models.reranker, backend=options)
    queries = [QUERY, "a query about rivers", "mountains", "x"] * 3
    alone = [engine.score(q, corpus) for q in queries]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda q: engine.score(q, corpus), queries))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"INFERENCE_PRECISION_HINT": "bf16"}, "config may not set 'INFERENCE_PRECISION_HINT'"),
        ({"CACHE_DIR": "/tmp/x"}, r"config may not set 'CACHE_DIR': use .*cache_folder"),
    ],
)
def test_config_may_not_change_precision_or_cache(config: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenVINOOptions(config=config)


def test_bad_settings_are_refused_when_made() -> None:
    with pytest.raises(ValueError, match="max_batch_tokens"):
        OpenVINOOptions(max_batch_tokens=0)
    with pytest.raises(TypeError, match="cache_folder must be a path"):
        OpenVINOOptions(cache_folder=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a dict"):
        OpenVINOOptions(config=["INFERENCE_NUM_THREADS"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="share_prefix"):
        OpenVINOOptions(share_prefix=True)  # type: ignore[call-arg]


def test_a_property_openvino_refuses_is_named(
    test_models: ModelPaths, options: OpenVINOOptions
) -> None:
    bad = OpenVINOOptions(cache_folder=options.cache_folder, config={"NO_SUCH_PROPERTY": 1})
    message = r"OpenVINO could not compile '.*decoder\.xml' with config="
    with pytest.raises(ValueError, match=message):
        Qwen3Embedder(test_models.embedding, backend=bad)


def test_a_checkpoint_the_decoder_does_not_cover_is_refused(
    test_models: ModelPaths, tmp_path: Path, options: OpenVINOOptions
) -> None:
    folder = tmp_path / "yarn"
    shutil.copytree(test_models.embedding, folder)
    config = json.loads((folder / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelKindError, match="backend='transformers'"):
        Qwen3Embedder(folder, backend=options)


def test_without_openvino_the_extra_is_named(
    test_models: ModelPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install 'qwen3-rag\[openvino\]'"):
        Qwen3Embedder(test_models.embedding, backend="openvino")


def test_adapters_run_on_openvino(
    test_models: ModelPaths, options: OpenVINOOptions, corpus: list[str]
) -> None:
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from langchain_qwen3 import Qwen3Embeddings
    from llamaindex_qwen3 import Qwen3Rerank

    documents = [Document(page_content=t) for t in corpus]
    found = [
        InMemoryVectorStore.from_documents(
            documents, Qwen3Embeddings(model=str(test_models.embedding), backend=backend)
        ).similarity_search_with_score(QUERY, k=3)
        for backend in (options, CPU)
    ]
    assert [d.page_content for d, _ in found[0]] == [d.page_content for d, _ in found[1]]
    np.testing.assert_allclose([s for _, s in found[0]], [s for _, s in found[1]], atol=1e-4)
    rerank = Qwen3Rerank(model=str(test_models.reranker), backend=options, top_n=2)
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in corpus]
    top = rerank.postprocess_nodes(nodes, QueryBundle(QUERY))
    want = Qwen3Reranker(test_models.reranker, backend=CPU).rerank(QUERY, corpus, top_n=2)
    assert [n.node.get_content() for n in top] == [corpus[r.index] for r in want]
    np.testing.assert_allclose([n.score for n in top], [r.score for r in want], atol=1e-4)


def test_demo_runs_on_openvino(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging as hf_logging

    from qwen3_core.cli.main import main

    # The tiny models stay where the session built them; OpenVINO's default cache folder moves.
    monkeypatch.setenv(CACHE_VARIABLE, str(models_cache_folder()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bars = hf_logging.is_progress_bar_enabled()
    try:
        assert main(["demo", "--tiny", "--backend", "openvino", "--query", "什么是重力？"]) == 0
    finally:  # the command turns transformers' bars off for its process; later tests need them
        if bars:
            hf_logging.enable_progress_bar()
    out, err = capfd.readouterr()
    assert "stage 2  reranking 8 candidates" in out and err == ""
    assert (tmp_path / "qwen3-rag" / "openvino").is_dir()


def test_corpus_job_workers_run_it_without_bars() -> None:
    from qwen3_core.batch.workers import engine_keywords

    assert engine_keywords({"backend": "openvino"})["backend"] == OpenVINOOptions(
        show_progress=False
    )
    given = OpenVINOOptions(show_progress=True, max_batch_tokens=64)
    assert engine_keywords({"backend": given})["backend"] == given
