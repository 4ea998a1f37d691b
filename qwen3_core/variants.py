"""Recognising which variant of a Qwen3 retrieval checkpoint a folder holds, before any
weights are read, and refusing what cannot be scored exactly.

The variants that circulate, and how each is told apart (docs/engine.md has the table):

- Embedding models: the official flat layout (``layers.*``, a ``Qwen3Model``, while
  config.json names ``Qwen3ForCausalLM``), or the same saved through the causal LM class
  (``model.*`` names, maybe an lm_head). Such a ``model.*`` folder is taken for an embedding
  model only when it says so: a sentence-transformers last-token Pooling module, or a
  tokenizer that appends ``<|endoftext|>`` as the embedding tokenizer does. Otherwise it is
  a chat model or a reranker.
- Rerankers: a ``Qwen3ForCausalLM`` with its own lm_head or one tied to the embeddings,
  scored from the "yes" and "no" rows; a ``Qwen3ForSequenceClassification`` conversion
  (``score.weight``) with one label (P(yes) = sigmoid) or two ordered [no, yes] (softmax);
  a sentence-transformers cross-encoder over a causal LM, whose score module names the token
  ids to compare.

Every tensor the model needs is checked to be in the files, so nothing is left randomly
initialised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qwen3_core import prompts
from qwen3_core.defaults import ModelKind
from qwen3_core.errors import ModelKindError
from qwen3_core.json_files import read_json
from qwen3_core.safetensors_index import weight_files

__all__ = ["Variant", "base_tensor_shapes", "read_config", "recognise", "tensor_shapes"]

Architecture = Literal["base", "causal_lm", "seq_cls"]

_LOADER = {"embedding": "Qwen3Embedder", "reranker": "Qwen3Reranker"}
VL_LOADER = {"embedding": "Qwen3VLEmbedder", "reranker": "Qwen3VLReranker"}


def _other_kind(reason: str, holds: ModelKind, *, what: str = "it") -> ModelKindError:
    """The error for a folder that looks like the other kind of model (``holds``)."""
    error = ModelKindError(f"{reason}: load {what} with {_LOADER[holds]}")
    error.holds, error.reason = holds, reason
    return error


@dataclass(frozen=True)
class Variant:
    """What a checkpoint folder holds and how it is loaded and scored."""

    kind: ModelKind
    """``"embedding"`` or ``"reranker"``."""
    architecture: Architecture
    """The transformers class to load: ``base`` (``Qwen3Model``), ``causal_lm`` or
    ``seq_cls``."""
    description: str
    """A short name for repr and errors, e.g. "causal LM, tied lm_head"."""
    num_labels: int = 0
    """For ``seq_cls``: 1 (P(yes) = sigmoid(score)) or 2 (softmax over [no, yes])."""
    yes_label: int = 0
    """For ``seq_cls``: which output is "yes"."""
    yes_id: int | None = None
    """For a causal LM: the token id compared, when the checkpoint names it (else "yes")."""
    no_id: int | None = None
    """For a causal LM: the token id compared against, when the checkpoint names it."""
    query_prompt: str | None = None
    """For an embedding model: the query prompt its sentence-transformers config declares."""
    document_prompt: str | None = None
    """For an embedding model: a document prompt its sentence-transformers config declares
    (Qwen3-Embedding's is empty; a fine-tuned model may have one)."""


# ---------------------------------------------------------------------------------------
# Reading the folder


def read_config(
    folder: Path, kind: ModelKind | None = None, *, vision: bool = False
) -> dict[str, Any]:
    """config.json, checked to be a text Qwen3 decoder's (``vision``: a Qwen3-VL model's).

    Args:
        folder: The model folder.
        kind: The model the caller asks for, if known: a model of the other family is
            refused naming the class that loads this kind of it (else both classes).
        vision: Expect a Qwen3-VL model (``model_type`` ``"qwen3_vl"``).

    Returns:
        The config as a dict.

    Raises:
        ModelKindError: The folder has no config.json, it is not a JSON object, or its
            ``model_type`` is not ``"qwen3"`` (with ``vision``: ``"qwen3_vl"``); a model of
            the other family is named as such, with the class to load it with.
    """
    path = folder / "config.json"
    if not path.is_file():
        raise ModelKindError(
            f"'{folder}' has no config.json: it is not a Hugging Face model folder"
        )
    config = read_json(path)
    if not isinstance(config, dict):
        raise ModelKindError(f"'{path}' does not hold a JSON object")
    model_type = config.get("model_type")
    wanted, other = ("qwen3_vl", "qwen3") if vision else ("qwen3", "qwen3_vl")
    if model_type == other:
        family, loaders = ("a text Qwen3", _LOADER) if vision else ("a Qwen3-VL", VL_LOADER)
        use = loaders[kind] if kind is not None else " or ".join(loaders.values())
        raise ModelKindError(
            f"'{folder}' is {family} model (model_type={model_type!r}), not "
            f"{'a Qwen3-VL' if vision else 'a text Qwen3'} model: load it with {use}"
        )
    if model_type != wanted:
        raise ModelKindError(
            f"'{folder}' is not a {'Qwen3-VL' if vision else 'Qwen3'} model: its config.json "
            f"says model_type={model_type!r} (expected {wanted!r})"
        )
    return config


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """Every tensor's name and shape in the folder's safetensors files (read from their
    headers, no weights), or None when the folder has none.

    Args:
        folder: The model folder: one ``model.safetensors``, or shards listed by
            ``model.safetensors.index.json``.

    Returns:
        Each tensor's name and shape, or None when the folder has no safetensors weights.

    Raises:
        ModelKindError: The index has no weight map, names a shard that is missing, or a
            file is not a readable safetensors file.
    """
    from safetensors import safe_open

    files = weight_files(folder)
    if files is None:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise ModelKindError(f"'{folder}' lacks the weight file '{name}' its index names")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                for key in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                    shapes[key] = tuple(handle.get_slice(key).get_shape())
        except Exception as exc:  # a truncated or foreign file: safetensors' own error types
            raise ModelKindError(f"'{path}' is not a readable safetensors file: {exc}") from exc
    return shapes


_DIMENSIONS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


def config_dimensions(folder: Path, config: Mapping[str, Any]) -> dict[str, int]:
    """The sizes a Qwen3 config.json gives its decoder, each checked to be a positive
    integer (``num_hidden_layers`` may be 0), with ``head_dim`` filled in where the config
    leaves it out.

    Args:
        folder: The model folder, for the error message.
        config: Its config.json, as ``read_config`` gives it.

    Returns:
        ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
        ``num_attention_heads``, ``num_key_value_heads``, ``vocab_size`` and ``head_dim``.

    Raises:
        ModelKindError: A size is missing, is not an integer or is not positive, or the
            attention heads are not a multiple of the key/value heads.
    """
    path = folder / "config.json"
    sizes: dict[str, int] = {}
    for name in (*_DIMENSIONS, "head_dim"):
        value = config.get(name)
        if name == "head_dim" and value is None:
            value = sizes["hidden_size"] // sizes["num_attention_heads"]
        if value is None:
            raise ModelKindError(f"'{path}' lacks the Qwen3 setting {name}")
        least = 0 if name == "num_hidden_layers" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ModelKindError(
                f"'{path}' gives {name}={value!r}: a Qwen3 decoder needs an integer of at "
                f"least {least}"
            )
        sizes[name] = value
    if sizes["num_attention_heads"] % sizes["num_key_value_heads"]:
        raise ModelKindError(
            f"'{path}' gives {sizes['num_attention_heads']} attention heads for "
            f"{sizes['num_key_value_heads']} key/value heads: the first must be a multiple "
            "of the second"
        )
    return sizes


def base_tensor_shapes(
    sizes: Mapping[str, int], *, attention_bias: bool = False
) -> dict[str, tuple[int, ...]]:
    """The tensors of a Qwen3 decoder (without prefix or head) and their shapes.

    Args:
        sizes: The decoder's sizes, as ``config_dimensions`` gives them (check
            ``num_hidden_layers`` against the files first: this lists every layer).
        attention_bias: Whether the attention projections have biases (the config's
            ``attention_bias``).

    Returns:
        Each tensor's flat name (``embed_tokens.weight``, ``layers.0.mlp.up_proj.weight``,
        ...) and shape.
    """
    hidden, inner = sizes["hidden_size"], sizes["intermediate_size"]
    heads, kv_heads = sizes["num_attention_heads"], sizes["num_key_value_heads"]
    head_dim, vocab = sizes["head_dim"], sizes["vocab_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "embed_tokens.weight": (vocab, hidden),
        "norm.weight": (hidden,),
    }
    outputs = {"q_proj": heads * head_dim, "k_proj": kv_heads * head_dim}
    outputs["v_proj"] = kv_heads * head_dim
    for layer in range(sizes["num_hidden_layers"]):
        block = f"layers.{layer}."
        shapes[f"{block}input_layernorm.weight"] = (hidden,)
        shapes[f"{block}post_attention_layernorm.weight"] = (hidden,)
        for name, size in outputs.items():
            shapes[f"{block}self_attn.{name}.weight"] = (size, hidden)
            if attention_bias:
                shapes[f"{block}self_attn.{name}.bias"] = (size,)
        shapes[f"{block}self_attn.o_proj.weight"] = (hidden, heads * head_dim)
        if attention_bias:
            shapes[f"{block}self_attn.o_proj.bias"] = (hidden,)
        shapes[f"{block}self_attn.q_norm.weight"] = (head_dim,)
        shapes[f"{block}self_attn.k_norm.weight"] = (head_dim,)
        shapes[f"{block}mlp.gate_proj.weight"] = (inner, hidden)
        shapes[f"{block}mlp.up_proj.weight"] = (inner, hidden)
        shapes[f"{block}mlp.down_proj.weight"] = (hidden, inner)
    return shapes


def _missing(names: list[str], present: Mapping[str, Any], prefix: str) -> list[str]:
    return [prefix + n for n in names if prefix + n not in present]


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# ---------------------------------------------------------------------------------------
# sentence-transformers layouts


def _st_modules(folder: Path) -> list[dict[str, Any]] | None:
    path = folder / "modules.json"
    if not path.is_file():
        return None
    modules = read_json(path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelKindError(f"'{path}' is not a list of sentence-transformers modules")
    return modules


def _module_class(module: Mapping[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _module_config(folder: Path, module: Mapping[str, Any]) -> dict[str, Any]:
    sub = folder / str(module.get("path", ""))
    for name in ("config.json", f"{_module_class(module).lower()}_config.json"):
        if (sub / name).is_file() and sub != folder:
            config = read_json(sub / name)
            return config if isinstance(config, dict) else {}
    return {}


def _st_embedding_layout(folder: Path, modules: list[dict[str, Any]]) -> None:
    """Refuse a sentence-transformers embedding pipeline the engine would not reproduce."""
    for module in modules:
        name = _module_class(module)
        if name == "Transformer":
            if str(module.get("path", "")) not in ("", "."):
                raise ModelKindError(
                    f"'{folder}' keeps its transformer in the subfolder "
                    f"'{module.get('path')}': load that subfolder"
                )
        elif name == "Pooling":
            if not _pools_last_token(_module_config(folder, module)):
                raise ModelKindError(
                    f"'{folder}' pools with another mode than the last token (its "
                    f"{module.get('path')}/config.json): Qwen3-Embedding's pooling is the "
                    "last token, so it cannot be scored exactly here"
                )
        elif name == "LogitScore":
            raise _other_kind(
                f"'{folder}' is a sentence-transformers cross-encoder (a reranker), not a "
                "Qwen3 embedding model",
                "reranker",
            )
        elif name != "Normalize":
            raise ModelKindError(
                f"'{folder}' has a sentence-transformers {name} module that Qwen3-Embedding "
                "does not have: it cannot be reproduced exactly here"
            )


def _pools_last_token(config: Mapping[str, Any]) -> bool:
    """A Pooling module's config (``pooling_mode``, or the older one flag per mode) says
    last-token pooling and nothing else."""
    if "pooling_mode" in config:
        return bool(config["pooling_mode"] == "lasttoken")
    modes = {k for k, v in config.items() if k.startswith("pooling_mode_") and v is True}
    return modes == {"pooling_mode_lasttoken"}


def _st_reranker_layout(folder: Path, modules: list[dict[str, Any]]) -> None:
    """Refuse a sentence-transformers cross-encoder the engine would not reproduce."""
    for module in modules:
        name = _module_class(module)
        if name == "Transformer" and str(module.get("path", "")) not in ("", "."):
            raise ModelKindError(
                f"'{folder}' keeps its transformer in the subfolder "
                f"'{module.get('path')}': load that subfolder"
            )
        if name not in ("Transformer", "LogitScore"):
            raise ModelKindError(
                f"'{folder}' has a sentence-transformers {name} module that Qwen3-Reranker "
                "does not have: it cannot be scored exactly here"
            )


def _st_prompts(folder: Path) -> tuple[str | None, str | None]:
    """The (query, document) prompts a sentence-transformers config declares (None where
    absent or empty)."""
    path = folder / "config_sentence_transformers.json"
    config = read_json(path) if path.is_file() else None
    declared = config.get("prompts") if isinstance(config, dict) else None
    if not isinstance(declared, dict):
        return None, None
    query, document = declared.get("query"), declared.get("document")
    return (
        query if isinstance(query, str) and query else None,
        document if isinstance(document, str) and document else None,
    )


def _st_reranker_token_ids(folder: Path, modules: list[dict[str, Any]]) -> tuple[int, int] | None:
    """The (true, false) token ids named by a cross-encoder's logit score module, if any."""
    for module in modules:
        config = _module_config(folder, module)
        if "true_token_id" in config or "false_token_id" in config:
            true_id = config.get("true_token_id")
            false_id = config.get("false_token_id")
            if not isinstance(true_id, int) or not isinstance(false_id, int):
                raise ModelKindError(
                    f"'{folder}' scores with true_token_id={true_id!r}, "
                    f"false_token_id={false_id!r}: a Qwen3 reranker compares two tokens' "
                    "logits, so it cannot be scored exactly here"
                )
            return true_id, false_id
    return None


def _tokenizer_appends_eos(folder: Path) -> bool:
    """Whether tokenizer.json appends ``<|endoftext|>``, as Qwen3-Embedding's does."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return False
    processor = _json_member(path, "post_processor")
    return prompts.EMBEDDING_EOS_TOKEN in json.dumps(processor)


_SPACE = re.compile(r"[ \t\n\r]*")
_HEAD_BYTES = 1 << 20


def _json_member(path: Path, key: str) -> Any:
    """One member of the JSON object in ``path`` (None if absent), parsed member by member
    up to it. tokenizer.json keeps its 18 MB vocabulary last, after the post-processor, so
    this reads its first MiB where ``read_json`` would parse the whole file (0.8 s)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
            whole = len(head) < _HEAD_BYTES
            try:
                return _member(head.decode("utf-8", errors="ignore"), key)
            except (ValueError, IndexError):
                if whole:
                    raise
            return _member((head + handle.read()).decode("utf-8"), key)
    except (OSError, ValueError, IndexError) as exc:
        raise ModelKindError(f"'{path}' is not valid JSON: {exc}") from exc
    except RecursionError:  # nesting deeper than the interpreter's stack allows
        raise ModelKindError(f"'{path}' nests its JSON too deeply to be read") from None


def _member(text: str, key: str) -> Any:
    # Raises ValueError or IndexError where the text ends early or is not a JSON object.
    decoder = json.JSONDecoder()

    def skip(at: int) -> int:
        return _SPACE.match(text, at).end()  # type: ignore[union-attr]

    at = skip(0)
    if text[at] != "{":
        raise ValueError("not a JSON object")
    at = skip(at + 1)
    while text[at] != "}":
        name, at = decoder.raw_decode(text, at)
        at = skip(at)
        if text[at] != ":":
            raise ValueError(f"expected ':' at character {at}")
        value, at = decoder.raw_decode(text, skip(at + 1))
        at = skip(at)
        if name == key:
            text[at]  # a number cut short at the end of the head would read as another
            return value
        if text[at] == ",":
            at = skip(at + 1)
        elif text[at] != "}":
            raise ValueError(f"expected ',' or '}}' at character {at}")
    return None


# ---------------------------------------------------------------------------------------
# Recognising the variant


def recognise(
    folder: Path,
    kind: ModelKind,
    *,
    weights: bool = True,
    config: dict[str, Any] | None = None,
) -> Variant:
    """The variant in ``folder`` for a ``kind`` engine, or ModelKindError naming why it
    cannot be used. With ``weights`` False (a client of a model server, which has only the
    configs), it is told from the configs alone. ``config``: the folder's config.json as
    ``read_config`` gave it, if the caller has it already.

    Args:
        folder: The model folder.
        kind: The model the caller asks for: ``"embedding"`` or ``"reranker"``.
        weights: Read the safetensors headers too (and require them); False tells the
            variant from the configs alone.
        config: The folder's config.json, if already read; None: it is read here.

    Returns:
        The variant: which transformers class to load and how to score it.

    Raises:
        ModelKindError: The folder is not a Qwen3 model, holds the other kind of model, has
            no safetensors weights (with ``weights``), lacks a tensor the model needs or
            has one of the wrong shape, or is a variant that cannot be scored exactly.
    """
    config = read_config(folder) if config is None else config
    modules = _st_modules(folder)
    shapes = tensor_shapes(folder) if weights else None
    if weights and shapes is None:
        raise ModelKindError(
            f"'{folder}' has no safetensors weights (model.safetensors or "
            "model.safetensors.index.json): only safetensors checkpoints are loaded"
        )
    if kind == "embedding":
        return _embedding_variant(folder, config, modules, shapes)
    return _reranker_variant(folder, config, modules, shapes)


def _layout(
    folder: Path, config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]
) -> Literal["flat", "prefixed"]:
    """Whether the decoder's tensors are named flat (``layers.*``) or ``model.*``, after
    checking that every one of them is there, in the shape the config gives it, and that
    the files hold no decoder tensor the config does not describe. The config's sizes are
    checked against the files before anything is built from them."""
    sizes = config_dimensions(folder, config)
    _check_layer_count(folder, sizes["num_hidden_layers"], shapes)
    wanted = base_tensor_shapes(sizes, attention_bias=bool(config.get("attention_bias")))
    names = list(wanted)
    flat, prefixed = _missing(names, shapes, ""), _missing(names, shapes, "model.")
    if flat and prefixed:
        missing = prefixed if len(prefixed) <= len(flat) else flat
        raise ModelKindError(
            f"'{folder}' lacks tensors its Qwen3 config needs ({len(missing)} of {len(names)}: "
            f"{_listing(missing)}): they would be left randomly initialised"
        )
    prefix = "" if not flat else "model."
    unexpected = [
        name
        for name in shapes
        if _in_decoder(name, prefix)
        and name[len(prefix) :] not in wanted
        and not name.endswith(_DERIVED_BUFFER)
    ]
    if unexpected:
        raise ModelKindError(
            f"'{folder}' holds decoder tensors its config.json does not describe "
            f"({_listing(sorted(unexpected))}): they would be silently ignored"
        )
    wrong = [
        f"{prefix}{name} {shapes[prefix + name]} (expected {shape})"
        for name, shape in wanted.items()
        if tuple(shapes[prefix + name]) != shape
    ]
    hidden = wanted["norm.weight"][0]
    for head in ("lm_head.weight", "score.weight"):
        if head in shapes and (len(shapes[head]) != 2 or shapes[head][1] != hidden):
            wrong.append(f"{head} {shapes[head]} (expected (..., {hidden}))")
    vocab = wanted["embed_tokens.weight"]
    head_rows = shapes.get("lm_head.weight")
    if head_rows and head_rows[0] != vocab[0]:
        wrong.append(f"lm_head.weight {head_rows} (expected {vocab})")
    if wrong:
        raise ModelKindError(
            f"'{folder}' holds tensors of another shape than its config gives "
            f"({_listing(wrong)}): it cannot be loaded as this model"
        )
    return "flat" if not flat else "prefixed"


_LAYER_NAME = re.compile(r"((?:model\.)?layers\.)(\d+)\.")
_HEADS = ("lm_head.", "score.")
_DERIVED_BUFFER = ".rotary_emb.inv_freq"
"""Saved by some older exports; computed from the config, so ignoring it changes nothing."""


def _check_layer_count(folder: Path, layers: int, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse a config whose ``num_hidden_layers`` differs from the decoder layers the files
    hold, before a name is listed for each layer it gives (a config may say 100 million)."""
    stored = sorted(
        (int(match[2]), match[1]) for name in shapes if (match := _LAYER_NAME.match(name))
    )
    count = stored[-1][0] + 1 if stored else 0
    block = stored[-1][1] if stored else "layers."  # named as the files name them
    if layers > count:
        raise ModelKindError(
            f"'{folder}/config.json' gives num_hidden_layers={layers}, but the weights hold "
            f"{count} decoder layers: {block}{count} and after would be left randomly "
            "initialised"
        )
    if layers < count:
        raise ModelKindError(
            f"'{folder}' holds {count} decoder layers (up to {block}{count - 1}), but its "
            f"config.json gives num_hidden_layers={layers}: {block}{layers} and after would "
            "be silently skipped"
        )


def _in_decoder(name: str, prefix: str) -> bool:
    """Whether a stored tensor belongs to the decoder (not a head) in a layout whose decoder
    names start with ``prefix``."""
    if prefix:
        return name.startswith(prefix)
    return not name.startswith(("model.", *_HEADS))


def _architectures(config: Mapping[str, Any]) -> list[str]:
    value = config.get("architectures") or []
    return [str(a) for a in value] if isinstance(value, list) else []


def _embedding_variant(
    folder: Path,
    config: dict[str, Any],
    modules: list[dict[str, Any]] | None,
    shapes: dict[str, tuple[int, ...]] | None,
) -> Variant:
    query_prompt, document_prompt = _st_prompts(folder)

    def embedding(description: str) -> Variant:
        return Variant(
            "embedding",
            "base",
            description,
            query_prompt=query_prompt,
            document_prompt=document_prompt,
        )

    if modules is not None:
        _st_embedding_layout(folder, modules)
    seq_cls = "Qwen3ForSequenceClassification" in _architectures(config) or (
        shapes is not None and "score.weight" in shapes
    )
    if seq_cls:
        raise _other_kind(
            f"'{folder}' looks like a Qwen3 sequence-classification reranker, not a Qwen3 "
            "embedding model",
            "reranker",
        )
    if shapes is None:
        return embedding("embedding model")
    if _layout(folder, config, shapes) == "flat":
        return embedding("embedding model")
    st_says = modules is not None and any(_module_class(m) == "Pooling" for m in modules)
    if st_says or _tokenizer_appends_eos(folder):
        return embedding("embedding model saved as a causal LM (its base model only)")
    raise _other_kind(
        f"'{folder}' looks like a Qwen3 reranker or chat model (a causal LM, and nothing marks "
        "it as an embedding model: no last-token Pooling module, no <|endoftext|> appended by "
        "its tokenizer), not a Qwen3 embedding model",
        "reranker",
        what="a reranker",
    )


def _reranker_variant(
    folder: Path,
    config: dict[str, Any],
    modules: list[dict[str, Any]] | None,
    shapes: dict[str, tuple[int, ...]] | None,
) -> Variant:
    architectures = _architectures(config)
    if "Qwen3ForSequenceClassification" in architectures or (
        shapes is not None and "score.weight" in shapes
    ):
        return _seq_cls_variant(folder, config, shapes)
    layout = None if shapes is None else _layout(folder, config, shapes)
    if layout == "flat" and shapes is not None and "lm_head.weight" not in shapes:
        raise _other_kind(
            f"'{folder}' looks like a Qwen3 embedding model (base-model weights without an "
            "lm_head), not a Qwen3 reranker model",
            "embedding",
        )
    if modules is not None and any(_module_class(m) == "Pooling" for m in modules):
        raise _other_kind(
            f"'{folder}' is a sentence-transformers embedding model (it has a Pooling module), "
            "not a Qwen3 reranker model",
            "embedding",
        )
    if layout == "flat":
        raise ModelKindError(
            f"'{folder}' names its decoder's tensors without the 'model.' prefix beside an "
            "lm_head: not a layout Qwen3ForCausalLM loads"
        )
    if modules is None and _tokenizer_appends_eos(folder):
        raise _other_kind(
            f"'{folder}' looks like a Qwen3 embedding model saved as a causal LM (its tokenizer "
            "appends <|endoftext|>, as Qwen3-Embedding's does), not a Qwen3 reranker model",
            "embedding",
        )
    tied = bool(config.get("tie_word_embeddings", False))
    if shapes is not None and "lm_head.weight" not in shapes and not tied:
        raise ModelKindError(
            f"'{folder}' has no lm_head.weight and its config does not tie the lm_head to the "
            "embeddings (tie_word_embeddings is false): the yes/no rows would be random"
        )
    token_ids = None
    if modules is not None:
        _st_reranker_layout(folder, modules)
        token_ids = _st_reranker_token_ids(folder, modules)
    has_head = "lm_head.weight" in shapes if shapes is not None else not tied
    description = "causal LM, " + ("own lm_head" if has_head else "tied lm_head")
    if token_ids is not None:
        description = "sentence-transformers cross-encoder over a " + description
        return Variant(
            "reranker", "causal_lm", description, yes_id=token_ids[0], no_id=token_ids[1]
        )
    return Variant("reranker", "causal_lm", description)


def _seq_cls_variant(
    folder: Path, config: dict[str, Any], shapes: dict[str, tuple[int, ...]] | None
) -> Variant:
    labels = _label_names(config)
    if shapes is not None:
        if "score.weight" not in shapes:
            raise ModelKindError(
                f"'{folder}' says Qwen3ForSequenceClassification but has no score.weight: "
                "its classifier would be random"
            )
        _layout(folder, config, shapes)
        count = shapes["score.weight"][0]
        if labels and len(labels) != count:
            raise ModelKindError(
                f"'{folder}' has a score.weight of {count} rows but its config names "
                f"{len(labels)} labels"
            )
    else:
        count = len(labels) if labels else int(config.get("num_labels", 2))
    if count not in (1, 2):
        raise ModelKindError(
            f"'{folder}' is a sequence-classification model with {count} labels: a Qwen3 "
            "reranker conversion has 1 (the yes-minus-no logit) or 2 ([no, yes])"
        )
    yes_label = 0
    if count == 2:
        yes_label = _yes_label(folder, labels)
    return Variant(
        "reranker",
        "seq_cls",
        f"sequence classification, {count} label{'s' if count > 1 else ''}",
        num_labels=count,
        yes_label=yes_label,
    )


def _label_names(config: Mapping[str, Any]) -> list[str]:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return []
    try:
        return [str(id2label[key]) for key in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return []


def _yes_label(folder: Path, labels: list[str]) -> int:
    """Which of two outputs is "yes": named labels say so; generic ones (LABEL_0, LABEL_1)
    follow the conversion's [no, yes] order."""
    names = [name.strip().lower() for name in labels]
    if not names or all(re.fullmatch(r"label_\d+", n) for n in names):
        return 1
    if sorted(names) == ["no", "yes"] or sorted(names) == ["false", "true"]:
        return names.index("yes") if "yes" in names else names.index("true")
    raise ModelKindError(
        f"'{folder}' labels its two outputs {labels}: expected [no, yes] to know which one "
        "is relevance"
    )
