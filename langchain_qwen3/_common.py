"""What the adapters share: the lazily built engine, field coercion and input checks. No
model logic lives here; everything about the models is in ``qwen3_core``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from langchain_core.documents import Document
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    model_validator,
)
from typing_extensions import Self

from qwen3_core.adapters import (
    backend_choice,
    backend_setting_dump,
    reject_settings_beside_engine,
)
from qwen3_core.backends.options import BackendChoice
from qwen3_core.lazy import LazyEngine

if TYPE_CHECKING:
    from qwen3_core.reranker import RerankResult

# The options are plain dataclasses that check themselves (and whose torch types pydantic
# cannot resolve without torch): pydantic only checks the kind.
if TYPE_CHECKING:
    BackendField = BackendChoice
else:
    BackendField = Annotated[
        Any, PlainValidator(backend_choice), PlainSerializer(backend_setting_dump)
    ]


class LazyEngineAdapter(BaseModel):
    """Base of the adapters: an engine built from the fields on first use, or the ready one
    given as ``engine=``.

    Copies (``copy``, ``deepcopy``, ``model_copy``) share the engine and its weights, unless
    an update changes an engine setting; a pickled adapter leaves the engine behind and the
    unpickled one builds its own from the fields on first use.
    """

    model_config = ConfigDict(
        extra="forbid",  # a misspelt ``top_k=`` must not pass silently
        arbitrary_types_allowed=True,  # the engines are plain classes
        use_attribute_docstrings=True,  # the docstrings under the fields describe them
        protected_namespaces=(),
        hide_input_in_errors=True,  # a rejected backend dict may hold an api_key
    )

    # The fields that configure the engine itself, which a ready ``engine=`` already fixed.
    _ENGINE_SETTINGS: ClassVar[tuple[str, ...]] = ()

    _engine: LazyEngine[Any] = PrivateAttr()

    def _build_engine(self) -> Any:
        """A new engine from the fields."""
        raise NotImplementedError

    def _describe_engine(self, engine: Any) -> None:
        """Set the fields from a ready engine, so they say what actually runs."""
        raise NotImplementedError

    def _given_engine(self) -> Any:
        return getattr(self, "engine", None)  # every adapter declares its typed ``engine`` field

    @model_validator(mode="before")
    @classmethod
    def _drop_none_beside_engine(cls, data: Any) -> Any:
        """Beside a ready engine, a setting given as None counts as not given, as in the
        LlamaIndex adapters."""
        if isinstance(data, dict) and data.get("engine") is not None:
            data = {
                name: value
                for name, value in data.items()
                if not (name in cls._ENGINE_SETTINGS and value is None)
            }
        return data

    @model_validator(mode="after")
    def _take_settings_from_engine(self) -> Self:
        engine = self._given_engine()
        if engine is not None:
            given = set(self.model_fields_set) & set(self._ENGINE_SETTINGS)
            reject_settings_beside_engine(
                {name: getattr(self, name) for name in given}, type(engine).__name__
            )
            self._describe_engine(engine)
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._engine = self._new_lazy_engine()

    def _new_lazy_engine(self) -> LazyEngine[Any]:
        engine = self._given_engine()
        return LazyEngine(self._build_engine) if engine is None else LazyEngine.ready(engine)

    @property
    def engine_loaded(self) -> bool:
        """Whether the engine has been built (and its weights loaded) yet."""
        return self._engine.loaded

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy that shares this adapter's engine, unless ``update`` changes an engine
        setting. ``deep`` changes nothing: the fields are immutable and the engine, with its
        weights, is shared on purpose."""
        copied = super().model_copy(update=update)
        if update and not set(update).isdisjoint({*self._ENGINE_SETTINGS, "engine"}):
            copied._engine = copied._new_lazy_engine()
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self.model_copy()

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        # Weights and locks do not pickle: the fields (which also describe a given engine)
        # are enough to build an equal engine again.
        private = {k: v for k, v in (state["__pydantic_private__"] or {}).items() if k != "_engine"}
        return {
            **state,
            "__dict__": {**state["__dict__"], "engine": None},
            "__pydantic_fields_set__": state["__pydantic_fields_set__"] - {"engine"},
            "__pydantic_private__": private,
        }

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._engine = self._new_lazy_engine()


def page_contents(documents: Any) -> list[str]:
    """The texts of ``documents``, with a TypeError naming the first item that is not a
    Document (the engine then checks the texts themselves)."""
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(f"documents must be a list of Document, got {type(documents).__name__}")
    texts: list[str] = []
    for index, document in enumerate(documents):
        if not isinstance(document, Document):
            raise TypeError(f"documents[{index}] must be a Document, got {type(document).__name__}")
        texts.append(document.page_content)
    return texts


def with_score(document: Document, hit: RerankResult, *, span: bool) -> Document:
    """A copy of ``document`` (same class, page_content, id and metadata) with
    ``metadata["relevance_score"]`` (P(yes)) and ``metadata["relevance_logit"]`` (the
    log-odds), and with ``span`` ``metadata["relevance_span"]`` (the characters that scored);
    the input and its metadata dict are left as they were."""
    metadata = {**document.metadata, "relevance_score": hit.score, "relevance_logit": hit.logit}
    if span:
        metadata["relevance_span"] = hit.span
    return document.model_copy(update={"metadata": metadata})
