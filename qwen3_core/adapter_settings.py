"""Internal: the engine settings of the LangChain and LlamaIndex adapters, declared once per
engine.

``RerankerSettings`` and ``EmbedderSettings`` (``VLRerankerSettings`` and ``VLEmbedderSettings``
for the Qwen3-VL engines) are pydantic mixins: every adapter of an engine
inherits their fields (checks, defaults and docstrings) and the generic code that builds the
engine from them on first use, takes a ready ``engine=`` and reads its settings back into
the fields, and passes the per-call settings to each call. Each mixin's ``EngineSpec`` says,
without pydantic or a framework, which settings a ready engine fixes and which each call may
set. A new engine setting is a field and a name in its spec here, beside the engine's own
keyword.

Only the adapters import this module: it needs pydantic, which both frameworks bring.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from qwen3_core.adapters import (
    backend_choice,
    backend_setting_dump,
    reject_settings_beside_engine,
)
from qwen3_core.backend_options import BackendChoice
from qwen3_core.defaults import (
    CHUNK_OVERLAP,
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_RERANKER_MODEL,
    DEFAULT_VL_EMBEDDING_MODEL,
    DEFAULT_VL_RERANKER_MODEL,
    MAX_CHUNKS_PER_DOCUMENT,
    MAX_LENGTH,
    MIN_MAX_LENGTH,
    REMOTE_IMAGE_MAX_BYTES,
    REMOTE_IMAGE_TIMEOUT,
    VL_EMBEDDING_MAX_LENGTH,
    VL_RERANKER_MAX_LENGTH,
)
from qwen3_core.document_windows import DocumentBudget, LongDocuments
from qwen3_core.embedder import Qwen3Embedder
from qwen3_core.lazy import LazyEngine
from qwen3_core.multimodal.prompts import CLOSING_TOKENS, RERANK_INSTRUCTION
from qwen3_core.prompts import DEFAULT_INSTRUCTION
from qwen3_core.reranker import Qwen3Reranker, RerankCall

if TYPE_CHECKING:
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder
    from qwen3_core.multimodal.reranker import Qwen3VLReranker

EngineT = TypeVar(
    "EngineT", bound="Qwen3Embedder | Qwen3Reranker | Qwen3VLEmbedder | Qwen3VLReranker"
)


def _path_as_str(value: Any) -> Any:
    """A folder given as a ``Path`` is kept as its str, so the field serialises."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


# The options are plain dataclasses that check themselves (and whose torch types pydantic
# cannot resolve without torch): pydantic only checks the kind.
if TYPE_CHECKING:
    ModelId = str
    BackendField = BackendChoice
else:
    ModelId = Annotated[str, BeforeValidator(_path_as_str)]
    BackendField = Annotated[
        Any, PlainValidator(backend_choice), PlainSerializer(backend_setting_dump)
    ]


@dataclass(frozen=True)
class EngineSpec(Generic[EngineT]):
    """How an engine's settings travel between an adapter and the engine, by the engine's
    keyword names: ``fixed`` are those a ready engine fixes (given beside ``engine=``, an
    error), ``per_call`` those each call may set (with ``engine=``, the engine's unless the
    adapter gives them). ``renamed`` maps an adapter's name for a setting to the engine's
    keyword where the two differ."""

    engine_class: type[EngineT] | str
    """The engine class, or its name in ``qwen3_core`` to import on first use (the Qwen3-VL
    engines import torch, which adapters of the text models on a server backend do without)."""
    fixed: tuple[str, ...]
    per_call: tuple[str, ...]
    renamed: Mapping[str, str] = field(default_factory=dict)

    @property
    def engine(self) -> type[EngineT]:
        """The engine class."""
        if isinstance(self.engine_class, str):
            import qwen3_core

            found: type[EngineT] = getattr(qwen3_core, self.engine_class)
            return found
        return self.engine_class

    @property
    def settings(self) -> tuple[str, ...]:
        """Every setting's engine keyword."""
        return self.fixed + self.per_call

    def keyword(self, name: str) -> str | None:
        """The engine keyword of the adapter field ``name``; None for the adapter's own."""
        keyword = self.renamed.get(name, name)
        return keyword if keyword in self.settings else None

    def build(self, settings: Mapping[str, Any]) -> EngineT:
        """A new engine from ``settings``, by engine keyword."""
        keywords = dict(settings)
        return self.engine(keywords.pop("model"), **keywords)

    @staticmethod
    def read(engine: EngineT, keyword: str) -> Any:
        """Setting ``keyword`` of a ready engine: the folder it loaded, the backend options it
        resolved (device and dtype included), else its property of that name."""
        if keyword == "model":
            return str(engine.model_path)
        if keyword == "backend":
            return engine.options
        return getattr(engine, keyword)


RERANKER: EngineSpec[Qwen3Reranker] = EngineSpec(
    Qwen3Reranker,
    fixed=("model", "backend", "max_length", "chunk_overlap", "max_chunks_per_document"),
    per_call=tuple(RerankCall.__annotations__),  # what each scoring call may set
)
EMBEDDER: EngineSpec[Qwen3Embedder] = EngineSpec(
    Qwen3Embedder,
    fixed=("model", "backend", "dimensions", "max_length"),
    per_call=("instruction",),
    renamed={"model_name": "model", "query_instruction": "instruction"},
)
# The Qwen3-VL engines, by name: they import torch, so only building or checking one imports
# them.
VL_RERANKER: EngineSpec[Qwen3VLReranker] = EngineSpec(
    "Qwen3VLReranker",
    fixed=(
        "model",
        "backend",
        "max_length",
        "allow_remote_images",
        "remote_image_max_bytes",
        "remote_image_timeout",
    ),
    per_call=("instruction",),
)
VL_EMBEDDER: EngineSpec[Qwen3VLEmbedder] = EngineSpec(
    "Qwen3VLEmbedder",
    fixed=(
        "model",
        "backend",
        "dimensions",
        "max_length",
        "allow_remote_images",
        "remote_image_max_bytes",
        "remote_image_timeout",
    ),
    per_call=("instruction",),
    renamed={"model_name": "model", "query_instruction": "instruction"},
)


class EngineSettings(BaseModel, Generic[EngineT]):
    """An adapter's engine: built from the settings on first use, or the ready one given as
    ``engine=``, whose settings then fill the fields.

    Copies (``copy``, ``deepcopy``, ``model_copy``) share the engine and its weights, unless
    an update changes a setting the engine fixes; a pickled adapter leaves the engine behind
    and the unpickled one builds its own from the fields on first use.
    """

    model_config = ConfigDict(
        extra="forbid",  # a misspelt ``top_k=`` must not pass silently
        arbitrary_types_allowed=True,  # the engines are plain classes
        use_attribute_docstrings=True,  # the docstrings under the fields describe them
        protected_namespaces=(),
        validate_by_name=True,  # ``from_dict`` and unpickling give the fields' own names
        validate_by_alias=True,
        hide_input_in_errors=True,  # a rejected backend dict may hold an api_key
    )

    ready_engine: EngineT | None = Field(default=None, alias="engine", exclude=True, repr=False)
    """The ready engine given as ``engine=``, used instead of building one from the settings;
    a pickled adapter leaves it behind."""

    _SPEC: ClassVar[EngineSpec[Any]]
    # Found from the spec when the class is made: each setting field of the adapter with its
    # engine keyword, and the fields a ready engine fixes.
    _SETTINGS: ClassVar[dict[str, str]] = {}
    _FIXED: ClassVar[frozenset[str]] = frozenset()
    _engine: LazyEngine[EngineT] = PrivateAttr()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        spec: EngineSpec[Any] | None = getattr(cls, "_SPEC", None)
        if spec is None:
            return
        found = {name: spec.keyword(name) for name in cls.model_fields}
        cls._SETTINGS = {name: keyword for name, keyword in found.items() if keyword is not None}
        cls._FIXED = frozenset(n for n, keyword in cls._SETTINGS.items() if keyword in spec.fixed)
        if sorted(cls._SETTINGS.values()) != sorted(spec.settings):
            raise TypeError(
                f"{cls.__name__} needs one field for each of {', '.join(spec.settings)}; "
                f"it has {', '.join(cls._SETTINGS)}"
            )

    @model_validator(mode="before")
    @classmethod
    def _one_value_per_setting(cls, data: Any) -> Any:
        """A field given by its name and its alias must say the same; beside a ready engine, a
        setting given as None counts as not given."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, info in cls.model_fields.items():
            alias = info.alias
            if alias is None or alias == name or alias not in data or name not in data:
                continue
            if _path_as_str(data[alias]) != _path_as_str(data[name]):
                raise ValueError(
                    f"{alias}={data[alias]!r} and {name}={data[name]!r} differ: they are one "
                    f"setting, give one of them"
                )
            del data[name]
        if data.get("engine", data.get("ready_engine")) is not None:
            for name in cls._SETTINGS:
                for key in (name, cls.model_fields[name].alias):
                    if key in data and data[key] is None:
                        del data[key]
        return data

    @model_validator(mode="after")
    def _take_settings_from_engine(self) -> Self:
        engine = self.ready_engine
        if engine is None:
            return self
        given = self.model_fields_set
        reject_settings_beside_engine(
            {name: getattr(self, name) for name in self._FIXED & given}, type(engine).__name__
        )
        # The fields describe what actually runs, not the defaults.
        for name, keyword in self._SETTINGS.items():
            if name in self._FIXED or name not in given:
                setattr(self, name, self._SPEC.read(engine, keyword))
        return self

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._engine = self._new_lazy_engine()

    def _new_lazy_engine(self) -> LazyEngine[EngineT]:
        engine = self.ready_engine
        return LazyEngine(self._build_engine) if engine is None else LazyEngine.ready(engine)

    def _build_engine(self) -> EngineT:
        built: EngineT = self._SPEC.build(
            {keyword: getattr(self, name) for name, keyword in self._SETTINGS.items()}
        )
        return built

    def call_settings(self) -> dict[str, Any]:
        """The per-call settings this adapter passes to each engine call, by the engine's
        keyword (for a reranker, those of ``RerankCall``)."""
        return {
            keyword: getattr(self, name)
            for name, keyword in self._SETTINGS.items()
            if name not in self._FIXED
        }

    @property
    def engine(self) -> EngineT:
        """The engine, built (and its weights loaded) on the first access."""
        return self._engine.get()

    @property
    def engine_loaded(self) -> bool:
        """Whether the engine has been built (and its weights loaded) yet."""
        return self._engine.loaded

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy that shares this adapter's engine, unless ``update`` changes a setting the
        engine fixes (the copy then builds its own from its fields). ``deep`` changes
        nothing: the engine, with its weights, is shared on purpose."""
        changes = dict(update or {})
        rebuild = not self._FIXED.isdisjoint(changes) or "ready_engine" in changes
        if rebuild:
            changes.setdefault("ready_engine", None)
        copied = super().model_copy(update=changes)
        if rebuild:
            copied._engine = copied._new_lazy_engine()
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self.model_copy()

    def __getstate__(self) -> dict[Any, Any]:
        # Weights and locks do not pickle: the fields (which also describe a given engine)
        # are enough to build an equal engine again. They leave before the framework's own
        # __getstate__ sees them (LlamaIndex's tries to pickle each value first).
        clone = copy.copy(self)  # its own __dict__, fields set and private attributes
        clone.__dict__["ready_engine"] = None
        clone.__pydantic_fields_set__.discard("ready_engine")
        (clone.__pydantic_private__ or {}).pop("_engine", None)
        state: dict[Any, Any] = super(EngineSettings, clone).__getstate__()
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._engine = self._new_lazy_engine()


class RerankerSettings(EngineSettings[Qwen3Reranker]):
    """A Qwen3-Reranker engine (``qwen3_core.Qwen3Reranker``), built on first use.

    Constructing loads nothing and touches no network; a bad model id or folder raises the
    engine's error on first use. ``engine=Qwen3Reranker(...)`` uses a ready engine: the
    settings it fixes then describe it, and giving any of them as well is an error; the
    per-call settings are the engine's unless given.
    """

    _SPEC: ClassVar[EngineSpec[Any]] = RERANKER

    model: ModelId = DEFAULT_RERANKER_MODEL
    """Hugging Face hub id or local folder of a Qwen3-Reranker checkpoint. A ready
    ``engine=`` fixes it."""
    backend: BackendField = "transformers"
    """Where the model runs: ``"transformers"``, ``"openvino"``, ``"vllm"``, or
    ``TransformersOptions``, ``OpenVINOOptions``, ``VllmOptions`` or ``ServerOptions`` with
    that backend's settings. A ready ``engine=`` fixes it (as the options it resolved)."""
    instruction: str = DEFAULT_INSTRUCTION
    """The task the reranker judges relevance for; with ``engine=``, the engine's unless
    given."""
    max_length: int = Field(default=MAX_LENGTH, ge=MIN_MAX_LENGTH["reranker"])
    """Longest prompt in tokens; a longer document is truncated, the prompt's frame kept. A
    ready ``engine=`` fixes it."""
    max_document_tokens: int | None = Field(default=None, ge=1)
    """Most tokens of a document in one prompt; None: whatever ``max_length`` leaves. With
    ``engine=``, the engine's unless given."""
    long_documents: LongDocuments = "truncate"
    """A document over the budget: ``"truncate"`` scores its first tokens; ``"chunk"``
    scores it in overlapping windows and keeps the best window's score. With ``engine=``,
    the engine's unless given."""
    chunk_overlap: int = Field(default=CHUNK_OVERLAP, ge=0)
    """Tokens shared by neighbouring windows of a chunked document (at most half a window).
    A ready ``engine=`` fixes it."""
    max_chunks_per_document: int = Field(default=MAX_CHUNKS_PER_DOCUMENT, ge=1)
    """Most windows scored per chunked document; past them, one warning per call. A ready
    ``engine=`` fixes it."""

    @model_validator(mode="after")
    def _check_document_budget(self) -> Self:
        """The budget settings together, as the engine checks them, before anything loads."""
        budget = {f.name: getattr(self, f.name) for f in dataclasses.fields(DocumentBudget)}
        DocumentBudget(**budget)
        return self


class _EmbedderSettingsBase(EngineSettings[Qwen3Embedder]):
    """The settings of a Qwen3-Embedding engine but the model's, whose field name differs
    between frameworks (the subclasses add it, with the spec)."""

    backend: BackendField = "transformers"
    """Where the model runs: ``"transformers"``, ``"openvino"``, ``"vllm"``, or
    ``TransformersOptions``, ``OpenVINOOptions``, ``VllmOptions`` or ``ServerOptions`` with
    that backend's settings. A ready ``engine=`` fixes it (as the options it resolved)."""
    query_instruction: str | None = None
    """The task given to queries (documents get none); None: the engine's, which is the
    query prompt the checkpoint declares (a fine-tuned model's), else
    ``DEFAULT_INSTRUCTION``. With ``engine=``, the engine's unless given."""
    dimensions: int | None = Field(default=None, ge=1)
    """Keep the first N dimensions (Matryoshka) before normalising; None: all of them. A
    ready ``engine=`` fixes it."""
    max_length: int = Field(default=MAX_LENGTH, ge=MIN_MAX_LENGTH["embedding"])
    """Longest input in tokens; longer texts are truncated, keeping their beginning. A ready
    ``engine=`` fixes it."""


class EmbedderSettings(_EmbedderSettingsBase):
    """A Qwen3-Embedding engine (``qwen3_core.Qwen3Embedder``), built on first use.

    Constructing loads nothing and touches no network; a bad model id or folder raises the
    engine's error on first use. ``engine=Qwen3Embedder(...)`` uses a ready engine: the
    settings it fixes then describe it, and giving any of them as well is an error;
    ``query_instruction`` is the engine's unless given.
    """

    _SPEC: ClassVar[EngineSpec[Any]] = EMBEDDER

    model: ModelId = DEFAULT_EMBEDDING_MODEL
    """Hugging Face hub id or local folder of a Qwen3-Embedding checkpoint. A ready
    ``engine=`` fixes it."""


class NamedEmbedderSettings(_EmbedderSettingsBase):
    """``EmbedderSettings`` with the model in ``model_name`` (``model=`` its alias), for a
    framework whose base class names it so (LlamaIndex's ``BaseEmbedding``)."""

    _SPEC: ClassVar[EngineSpec[Any]] = EMBEDDER

    model_name: ModelId = Field(default=DEFAULT_EMBEDDING_MODEL, alias="model")
    """Hugging Face hub id or local folder of a Qwen3-Embedding checkpoint. A ready
    ``engine=`` fixes it."""


class _VLSettings(EngineSettings[Any]):
    """What both Qwen3-VL engines take beside the model: the backend and the remote-image
    settings. The engine field is checked against the spec's class only when an engine is
    given (which has imported the engines already)."""

    ready_engine: Any = Field(default=None, alias="engine", exclude=True, repr=False)
    """The ready engine given as ``engine=``, used instead of building one from the settings;
    a pickled adapter leaves it behind."""
    backend: BackendField = "transformers"
    """Where the model runs: ``"transformers"`` or ``TransformersOptions(device=...,
    dtype=..., max_batch_tokens=...)`` (the Qwen3-VL engines run in this process only). A
    ready ``engine=`` fixes it (as the options it resolved)."""
    allow_remote_images: bool = False
    """Fetch images given as ``http(s)://`` addresses. Off by default: a library that
    fetches addresses found in documents can be made to reach internal services. A ready
    ``engine=`` fixes it."""
    remote_image_max_bytes: int = Field(default=REMOTE_IMAGE_MAX_BYTES, ge=1)
    """The largest image download, in bytes. A ready ``engine=`` fixes it."""
    remote_image_timeout: float = Field(default=REMOTE_IMAGE_TIMEOUT, gt=0)
    """Seconds for connecting and for each read of an image download. A ready ``engine=``
    fixes it."""

    @field_validator("ready_engine")
    @classmethod
    def _engine_of_the_spec(cls, engine: Any) -> Any:
        kind = cls._SPEC.engine if engine is not None else None
        if kind is not None and not isinstance(engine, kind):
            raise ValueError(f"engine must be a {kind.__name__}, got {type(engine).__name__}")
        return engine


class VLRerankerSettings(_VLSettings):
    """A Qwen3-VL-Reranker engine (``qwen3_core.Qwen3VLReranker``), built on first use.

    Constructing loads nothing and touches no network; a bad model id or folder raises the
    engine's error on first use. ``engine=Qwen3VLReranker(...)`` uses a ready engine: the
    settings it fixes then describe it, and giving any of them as well is an error;
    ``instruction`` is the engine's unless given.
    """

    _SPEC: ClassVar[EngineSpec[Any]] = VL_RERANKER

    model: ModelId = DEFAULT_VL_RERANKER_MODEL
    """Hugging Face hub id or local folder of a Qwen3-VL-Reranker checkpoint. A ready
    ``engine=`` fixes it."""
    instruction: str = RERANK_INSTRUCTION
    """The task the reranker judges relevance for; with ``engine=``, the engine's unless
    given."""
    max_length: int = Field(default=VL_RERANKER_MAX_LENGTH, ge=1)
    """Longest prompt in tokens before its closing five; a longer pair's text is cut (images
    and the prompt's frame are kept). A ready ``engine=`` fixes it."""


class _VLEmbedderSettingsBase(_VLSettings):
    """The settings of a Qwen3-VL-Embedding engine but the model's, whose field name
    differs between frameworks (the subclasses add it, with the spec)."""

    query_instruction: str | None = None
    """The task given to text queries (documents and images get the official "Represent the
    user's input."); None: the engine's, "Retrieve images or text relevant to the user's
    query.". With ``engine=``, the engine's unless given."""
    dimensions: int | None = Field(default=None, ge=1)
    """Keep the first N dimensions (Matryoshka) before normalising; None: all of them. A
    ready ``engine=`` fixes it."""
    max_length: int = Field(default=VL_EMBEDDING_MAX_LENGTH, ge=CLOSING_TOKENS)
    """Longest prompt in tokens before its closing five; a longer input's text is cut (its
    images are kept). A ready ``engine=`` fixes it."""


class VLEmbedderSettings(_VLEmbedderSettingsBase):
    """A Qwen3-VL-Embedding engine (``qwen3_core.Qwen3VLEmbedder``), built on first use.

    Constructing loads nothing and touches no network; a bad model id or folder raises the
    engine's error on first use. ``engine=Qwen3VLEmbedder(...)`` uses a ready engine: the
    settings it fixes then describe it, and giving any of them as well is an error;
    ``query_instruction`` is the engine's unless given.
    """

    _SPEC: ClassVar[EngineSpec[Any]] = VL_EMBEDDER

    model: ModelId = DEFAULT_VL_EMBEDDING_MODEL
    """Hugging Face hub id or local folder of a Qwen3-VL-Embedding checkpoint. A ready
    ``engine=`` fixes it."""


class NamedVLEmbedderSettings(_VLEmbedderSettingsBase):
    """``VLEmbedderSettings`` with the model in ``model_name`` (``model=`` its alias), for
    LlamaIndex's ``BaseEmbedding``."""

    _SPEC: ClassVar[EngineSpec[Any]] = VL_EMBEDDER

    model_name: ModelId = Field(default=DEFAULT_VL_EMBEDDING_MODEL, alias="model")
    """Hugging Face hub id or local folder of a Qwen3-VL-Embedding checkpoint. A ready
    ``engine=`` fixes it."""
