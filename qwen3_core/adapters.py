"""Internal: what the LangChain and LlamaIndex adapters share, framework-free (no model logic):
the ``backend`` setting and the ``engine=`` rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from qwen3_core.backend_options import (
    BackendChoice,
    ServerOptions,
    backend_options,
    options_class,
)


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
    out and a password in ``base_url`` shown as ``***``, so a saved component holds no
    secret; give them again when loading."""
    if isinstance(value, str):
        return value
    settings = {field.name: getattr(value, field.name) for field in fields(value)}
    settings.pop("api_key", None)
    if isinstance(value, ServerOptions):
        settings["base_url"] = value.shown_base_url
    return {"name": value.name, **settings}


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
