"""Internal: what both adapters share beyond their settings (``qwen3_core.adapter_settings``):
the checks that make a wrong keyword a ``TypeError``, as for LlamaIndex's own classes. No model
logic lives here; everything about the models is in ``qwen3_core``."""

from __future__ import annotations

from typing import Any, ClassVar

from llama_index.core.bridge.pydantic import BaseModel, model_validator

from qwen3_core.adapter_settings import EngineSpec


class KeywordChecks(BaseModel):
    """An unknown keyword argument, or an engine of the wrong class, is a ``TypeError``
    naming it, raised before anything else is checked: a misspelt setting must not pass
    silently, and must read like any Python call's error."""

    _SPEC: ClassVar[EngineSpec[Any]]  # the adapter's, from its settings mixin

    @model_validator(mode="before")
    @classmethod
    def _reject_wrong_keywords(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        known = set(fields) | {info.alias for info in fields.values() if info.alias}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(
                f"{cls.__name__}() got unexpected keyword argument(s): "
                + ", ".join(map(repr, unknown))
            )
        engine = data.get("engine", data.get("ready_engine"))
        kind = cls._SPEC.engine
        if engine is not None and not isinstance(engine, kind):
            raise TypeError(f"engine must be a {kind.__name__}, got {type(engine).__name__}")
        return data
