"""What the LangChain and LlamaIndex adapters share, framework-free (no model logic): the
``backend`` setting, the adapter settings of earlier releases, and the ``engine=`` rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from qwen3_core.backends.legacy import options_with_old_keywords
from qwen3_core.backends.options import (
    BackendChoice,
    backend_options,
    options_class,
)

OLD_ADAPTER_SETTINGS = ("device", "dtype", "max_batch_tokens", "show_progress", "backend_options")
"""Adapter settings of earlier releases, now inside ``backend=``'s options."""


def backend_choice(value: Any) -> BackendChoice:
    """An adapter's ``backend`` setting, checked: a backend's name, its options, or options
    as ``backend_setting_dump`` wrote them (a dict with the backend's ``name``).

    Raises:
        ValueError: An unknown name, or ``"server"`` without its address.
        TypeError: Neither a name nor options.
    """
    if isinstance(value, Mapping) and "name" in value:
        settings = {key: item for key, item in value.items() if key != "name"}
        options: BackendChoice = options_class(str(value["name"]))(**settings)
        return options
    backend_options(value)  # the engine's own check of names and options
    checked: BackendChoice = value
    return checked


def backend_setting_dump(value: BackendChoice) -> str | dict[str, Any]:
    """An adapter's ``backend`` setting as plain data (``to_dict``, ``model_dump``, JSON):
    the name, or the options' settings under the backend's ``name``. An ``api_key`` is left
    out, so a saved component holds no secret; give it again when loading."""
    if isinstance(value, str):
        return value
    settings = {field.name: getattr(value, field.name) for field in fields(value)}
    settings.pop("api_key", None)
    return {"name": value.name, **settings}


def fold_old_settings(owner: str, settings: dict[str, Any], *, stacklevel: int) -> None:
    """Move the adapter settings of earlier releases (``device=``, ``backend_options=`` ...)
    in ``settings`` into its ``backend``, with a DeprecationWarning; ``settings`` is changed
    in place. Settings given as None count as not given."""
    old = {name: settings.pop(name) for name in OLD_ADAPTER_SETTINGS if name in settings}
    flat = {name: value for name, value in old.items() if name != "backend_options"}
    nested = old.get("backend_options") or {}
    if not isinstance(nested, Mapping):
        raise TypeError(f"backend_options must be a dict, got {type(nested).__name__}")
    given = {name: value for name, value in {**flat, **nested}.items() if value is not None}
    if given:
        settings["backend"] = options_with_old_keywords(
            owner,
            settings.get("backend", "transformers"),
            given,
            stacklevel=stacklevel + 1,
        )


def reject_settings_beside_engine(given: Mapping[str, Any], kind: str) -> None:
    """A ready engine already fixes its model and loading settings: one given as well would be
    silently ignored, so that is an error. ``given`` holds the engine settings the caller
    named; one given as None counts as not given. Both adapters decide it this way.

    Raises:
        ValueError: Some engine setting was given beside the engine.
    """
    names = sorted(name for name, value in given.items() if value is not None)
    if names:
        raise ValueError(
            f"engine= was given together with {', '.join(names)}: a ready {kind} already fixes "
            "its model and settings, so pass either engine= or those settings, not both"
        )
