"""qwen3-rag's own CPU decoder (``qwen3_core.decoder``): on every checkpoint variant it computes
what transformers' ``Qwen3Model`` computes, bit for bit; it is built from the files without a
second copy of the weights and without importing transformers; a reranker holds no head, only
its two score rows. Configs it does not cover are loaded by transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.decoder import DecoderConfig, Qwen3Decoder
from qwen3_core.loading import LoadedModel, load_model
from qwen3_core.testing import ModelPaths, VariantPaths
from qwen3_core.testing.variants import EMBEDDING_VARIANTS, RERANKER_VARIANTS
from qwen3_core.variants import read_config
from qwen3_core.weights import SafetensorsFolder
from tests.faulty_models import link_or_copy
from tests.options import CPU

QUERY = "What is the capital of China?"
VARIANTS = [("embedding", name) for name in EMBEDDING_VARIANTS] + [
    ("reranker", name) for name in RERANKER_VARIANTS
]


def _folder(test_variants: VariantPaths, kind: str, name: str) -> Path:
    return (test_variants.embeddings if kind == "embedding" else test_variants.rerankers)[name]


def _load(folder: Path, kind: Any, dtype: torch.dtype, decoder: Any) -> LoadedModel:
    return load_model(folder, kind, TransformersOptions(device="cpu", dtype=dtype, decoder=decoder))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("kind", "name"), VARIANTS)
def test_hidden_states_equal_transformers(
    kind: str,
    name: str,
    dtype: torch.dtype,
    test_variants: VariantPaths,
) -> None:
    folder = _folder(test_variants, kind, name)
    own = _load(folder, kind, dtype, "qwen3-rag")
    theirs = _load(folder, kind, dtype, "transformers")
    assert isinstance(own.model, Qwen3Decoder)
    assert type(theirs.model).__name__ == "Qwen3Model"
    ids = torch.randint(0, 151_000, (3, 29), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        mine = own.model(input_ids=ids).last_hidden_state
        want = theirs.model(input_ids=ids).last_hidden_state
    assert mine.dtype == want.dtype == dtype
    assert torch.equal(mine, want)
    if kind == "reranker":
        assert own.score_rows is not None and theirs.score_rows is not None
        assert torch.equal(own.score_rows, theirs.score_rows)
    else:
        assert own.score_rows is None


@pytest.mark.parametrize("name", RERANKER_VARIANTS)
def test_reranker_scores_equal_transformers_with_and_without_the_shared_prefix(
    name: str,
    test_variants: VariantPaths,
    corpus: list[str],
) -> None:
    folder = test_variants.rerankers[name]
    pairs = [(QUERY, d) for d in corpus[:6]] + [("gravity", d) for d in corpus[:5]]
    results = []
    for decoder in ("qwen3-rag", "transformers"):
        for share in (True, False):
            options = replace(CPU, share_prefix=share, decoder=decoder)
            engine = Qwen3Reranker(folder, backend=options)
            assert engine.options.decoder == decoder
            results.append(engine.logits_pairs(pairs))
    shared, whole, shared_hf, whole_hf = results
    np.testing.assert_array_equal(shared, shared_hf)
    np.testing.assert_array_equal(whole, whole_hf)
    np.testing.assert_allclose(shared, whole, atol=1e-4, rtol=0)  # log-odds, not P(yes)


@pytest.mark.parametrize("name", EMBEDDING_VARIANTS)
def test_embeddings_equal_transformers(
    name: str, test_variants: VariantPaths, corpus: list[str]
) -> None:
    folder = test_variants.embeddings[name]
    transformers = replace(CPU, decoder="transformers")
    theirs = Qwen3Embedder(folder, backend=transformers).embed_documents(corpus)
    mine = Qwen3Embedder(folder, backend=CPU).embed_documents(corpus)
    np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("name", ["causal-untied", "causal-tied", "seq-cls-1", "seq-cls-2"])
def test_score_rows_are_the_full_heads_rows(name: str, test_variants: VariantPaths) -> None:
    """The two rows read from the files are those of the head transformers would load whole."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    folder = test_variants.rerankers[name]
    loaded = _load(folder, "reranker", torch.float32, "qwen3-rag")
    tokenizer = loaded.checkpoint.tokenizer
    yes, no = tokenizer.token_to_id("yes"), tokenizer.token_to_id("no")
    rows = loaded.score_rows
    assert rows is not None
    if name.startswith("seq-cls"):
        model = AutoModelForSequenceClassification.from_pretrained(str(folder))
        full, variant = model.score.weight, loaded.checkpoint.variant
        if variant.num_labels == 1:  # the log-odds is the one score itself
            want = torch.stack([torch.zeros_like(full[0]), full[0]])
        else:
            want = full[[1 - variant.yes_label, variant.yes_label]]
    else:
        full = AutoModelForCausalLM.from_pretrained(str(folder)).get_output_embeddings().weight
        want = full[[no, yes]]
    assert rows.dtype == torch.float32 and torch.equal(rows, want.detach())


@pytest.mark.parametrize("decoder", ["qwen3-rag", "transformers"])
def test_a_reranker_holds_no_head(decoder: str, test_variants: VariantPaths) -> None:
    """Only the base model is loaded, for every variant and either decoder: the one
    vocabulary-sized tensor is the token embedding table."""
    for name in RERANKER_VARIANTS:
        model = _load(test_variants.rerankers[name], "reranker", torch.float32, decoder).model
        names = [n for n, _ in model.named_parameters()]
        assert not any(n.startswith(("lm_head", "score")) for n in names), name
        vocabulary = model.get_input_embeddings().weight.shape[0]
        sized = [n for n, p in model.named_parameters() if p.shape[0] == vocabulary]
        assert sized == ["embed_tokens.weight"], (name, sized)


def test_each_decoder_is_a_model_of_its_own(test_models: ModelPaths) -> None:
    own = _load(test_models.embedding, "embedding", torch.float32, "qwen3-rag")
    theirs = _load(test_models.embedding, "embedding", torch.float32, "transformers")
    assert own is not theirs and isinstance(own.model, Qwen3Decoder)
    assert _load(test_models.embedding, "embedding", torch.float32, None) is own  # the default
    assert _load(test_models.embedding, "embedding", torch.float32, None).resolved == {
        "device": "cpu",
        "dtype": "float32",
        "decoder": "qwen3-rag",  # the default on CPU
        "cpu_linear": "onednn",
        "int8_kernel": None,
    }
    with pytest.raises(ValueError, match="unknown decoder 'keras'"):
        TransformersOptions(decoder="keras")  # type: ignore[arg-type]


def test_the_engine_options_say_which_decoder_runs(test_models: ModelPaths) -> None:
    assert Qwen3Embedder(test_models.embedding, backend=CPU).options.decoder == "qwen3-rag"
    options = replace(CPU, model_kwargs={"attn_implementation": "sdpa"})
    engine = Qwen3Embedder(test_models.embedding, backend=options)
    assert type(engine.loaded_model).__name__ == "Qwen3Model"
    assert engine.options.decoder == "transformers"  # model_kwargs are transformers' arguments
    with pytest.raises(ValueError, match="model_kwargs are arguments of transformers'"):
        replace(options, decoder="qwen3-rag")


@pytest.mark.parametrize(
    "change",
    [
        {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
        {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 0},
        {"head_dim": None},
        {"hidden_act": "gelu"},
    ],
    ids=["rope-scaling", "sliding-window", "no-head-dim", "gelu"],
)
def test_configs_it_does_not_cover_go_to_transformers(
    change: dict[str, Any], test_models: ModelPaths, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(test_models.embedding, folder, copy_function=link_or_copy)
    config = read_config(folder)
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}
    (folder / "config.json").unlink()  # a hard link: never write through it
    (folder / "config.json").write_text(json.dumps(config))
    assert DecoderConfig.from_config(config) is None
    if "head_dim" in change:
        return  # transformers would assume another head size than the files hold
    own = replace(CPU, decoder="qwen3-rag")
    with pytest.raises(ValueError, match="decoder='qwen3-rag' does not cover"):
        Qwen3Embedder(folder, backend=own)  # asked for first: refused before any load
    engine = Qwen3Embedder(folder, backend=CPU)
    assert type(engine.loaded_model).__name__ == "Qwen3Model"
    assert engine.options.decoder == "transformers"
    assert np.isfinite(engine.embed_queries([QUERY])).all()
    with pytest.raises(ValueError, match="decoder='qwen3-rag' does not cover"):
        Qwen3Embedder(folder, backend=own)  # and after the default loaded transformers'


def test_safetensors_reader_matches_safetensors(test_variants: VariantPaths) -> None:
    folder = test_variants.rerankers["sharded-bf16"]
    files = SafetensorsFolder.open(folder)
    assert files is not None
    want: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        want.update(load_file(str(shard)))
    assert set(files.entries) == set(want)
    buffer = torch.empty(10**6, dtype=torch.bfloat16)
    for name, tensor in want.items():
        assert torch.equal(files.read(name), tensor)
        if tensor.numel() <= buffer.numel():
            assert torch.equal(files.read(name, buffer[: tensor.numel()]), tensor)
    table = want["model.embed_tokens.weight"]
    rows = files.rows_on_demand("model.embed_tokens.weight")
    ids = torch.tensor([[0, 7, 8, 9], [len(table) - 1, 8, 3, 0]])
    rows.fill(ids)
    for row in ids.unique().tolist():
        assert torch.equal(rows.tensor[row], table[row])


_FRESH_PROCESS = """
import json, sys
from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
kind, folder, weights = sys.argv[1], sys.argv[2], sys.argv[3]
options = TransformersOptions(device="cpu")
if kind == "embedding":
    engine = Qwen3Embedder(folder, backend=options)
    engine.embed_documents(["a document", "another one"])
else:
    engine = Qwen3Reranker(folder, backend=options)
    engine.score("a query", ["a document", "another one"])
mapped = 0
with open("/proc/self/maps") as maps:
    for line in maps:
        if line.rstrip().endswith(weights):
            start, end = (int(n, 16) for n in line.split()[0].split("-"))
            mapped += end - start
print(json.dumps({"mapped": mapped, "transformers": "transformers" in sys.modules}))
"""


@pytest.mark.parametrize("kind", ["embedding", "reranker"])
def test_fresh_process_maps_nothing_of_the_weights_and_imports_no_transformers(
    kind: str, test_models: ModelPaths, tmp_path: Path
) -> None:
    """In a new process, after a load and a first call: nothing of the weights file is
    mapped (the decoder's weights were read and packed, the embedding rows looked up read
    into memory, a reranker's lm_head never touched), and transformers was never
    imported."""
    source = test_models.embedding if kind == "embedding" else test_models.reranker
    folder = tmp_path / kind  # a path of its own, so that its mappings are told apart
    shutil.copytree(source, folder, copy_function=link_or_copy)
    weights = folder / "model.safetensors"
    run = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, kind, str(folder), str(weights)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"mapped": 0, "transformers": False}
