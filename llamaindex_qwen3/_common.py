"""What both adapters share: field coercion, the ``engine=`` rule and pickling. No model
logic lives here; everything about the models is in ``qwen3_core``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

from llama_index.core.schema import BaseComponent
from pydantic import PlainSerializer, PlainValidator

from qwen3_core.adapters import backend_choice, backend_setting_dump
from qwen3_core.backends.options import BackendChoice

# The options are plain dataclasses that check themselves (and whose torch types pydantic
# cannot resolve without torch): pydantic only checks the kind.
if TYPE_CHECKING:
    BackendField = BackendChoice
else:
    BackendField = Annotated[
        Any, PlainValidator(backend_choice), PlainSerializer(backend_setting_dump)
    ]


def model_id(value: str | os.PathLike[str]) -> str:
    """A hub id or folder as a plain str, so the field serialises (``Path`` -> ``str``)."""
    name = os.fspath(value)
    if not isinstance(name, str):
        raise TypeError(f"model must be a hub id or a folder path, got {value!r}")
    return name


def one_model_name(
    model: str | os.PathLike[str] | None, model_name: str | os.PathLike[str] | None
) -> str | None:
    """The model from ``model`` or its LlamaIndex alias ``model_name``: one of them, or both
    naming the same one; None when neither is given."""
    if model is not None and model_name is not None and model_id(model) != model_id(model_name):
        raise ValueError(
            f"model={model_id(model)!r} and model_name={model_id(model_name)!r} differ: "
            "they are one setting, give one of them"
        )
    chosen = model if model is not None else model_name
    return None if chosen is None else model_id(chosen)


def reject_unknown_kwargs(
    owner: str,
    kwargs: dict[str, Any],
    base: type[BaseComponent] | None = None,
    allowed: frozenset[str] = frozenset(),
) -> None:
    """Further keyword arguments may only be fields of the LlamaIndex ``base`` class (or
    ``allowed``): a misspelt setting must not pass silently."""
    known = set(allowed) | (set(base.model_fields) if base is not None else set())
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"{owner}() got unexpected keyword argument(s): {', '.join(map(repr, unknown))}"
        )


def state_without_engine(component: BaseComponent) -> dict[str, Any]:
    """The pickle state of ``component`` without its ``_engine``.

    LlamaIndex pickles components (e.g. for ``IngestionPipeline(num_workers=...)``) and
    probes each private attribute with ``pickle.dumps`` first: for a loaded engine that
    would serialise the weights before failing on its lock. The unpickled adapter is rebuilt
    from its fields (LlamaIndex's ``__setstate__`` calls ``__init__``) and builds its own
    engine on first use.
    """
    clone = component.model_copy()  # its private attributes are a fresh dict
    private = clone.__pydantic_private__
    if private is not None:
        private.pop("_engine", None)
    state: dict[str, Any] = BaseComponent.__getstate__(clone)
    return state
