"""Internal: request bodies of the endpoints, in the schemas the clients already send, and
what the answers hold.

Fields a client does not know are ignored; ours come on top, under names no client uses:

- Rerank answers carry ``log_odds`` (logit("yes") - logit("no"), which ranks; the
  ``relevance_score`` is its sigmoid, P(yes)) and ``span`` (the [start, end) characters of the
  document the score comes from: the best window when ``long_documents`` is ``"chunk"``).
- Requests may carry ``instruction`` (the task, instead of the server's) and, for rerank,
  ``long_documents`` (``"truncate"`` or ``"chunk"``).

Truncation. An input over the model's ``max_length`` is cut, keeping its beginning, unless the
request says not to (TEI ``truncate: false``, Cohere ``truncate: "NONE"``): it is then refused.
Cutting from the start (Cohere ``"START"``, TEI ``truncation_direction: "Left"``) is refused.

Model names. ``model`` is checked against the endpoint's model (after a ``:query`` or
``:document`` suffix is taken off); see ``app.py``.

Queries and documents. An embedding model embeds a query after an instruction and a document
as it is. Callers say which they send by:

- Cohere ``/v2/embed``: ``input_type`` ``"search_query"`` (a query) or ``"search_document"``,
  ``"classification"``, ``"clustering"`` (documents).
- TEI ``/embed``: ``prompt_name: "query"``.
- OpenAI ``/v1/embeddings``: ``input_type: "query"`` (or ``"search_query"``) in the body (the
  SDK's ``extra_body``), or a model name ending in ``:query`` (for clients that cannot add
  fields to the body, e.g. ``OpenAIEmbeddings(model="qwen3-embedding:query")``). Anything
  else is a document. ``input`` may also be token ids (a list of ints, or a list of such
  lists): they are embedded exactly as given, no instruction added.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from qwen3_core.document_windows import LongDocuments
from qwen3_core.serve.settings import DOCUMENT_SUFFIX, QUERY_SUFFIX


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextDocument(_Body):
    """A document as ``{"text": ...}`` (Cohere v1 and Jina accept these)."""

    text: StrictStr


CohereTruncate = Literal["NONE", "START", "END"]
TeiDirection = Literal["Left", "Right", "left", "right"]

NonNegative = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[StrictInt, Field(ge=1)]


class RerankRequest(_Body):
    """``POST /v1/rerank`` and ``/v2/rerank``: Cohere's and Jina's rerank."""

    model: StrictStr | None = None
    query: StrictStr
    documents: list[StrictStr | TextDocument]
    top_n: NonNegative | None = None
    return_documents: StrictBool = False
    max_tokens_per_doc: Positive | None = None
    instruction: StrictStr | None = None
    long_documents: LongDocuments | None = None
    truncate: CohereTruncate | None = None

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class TeiRerankRequest(_Body):
    """``POST /rerank``: text-embeddings-inference's rerank. ``raw_scores`` answers the
    log-odds as ``score`` instead of P(yes)."""

    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: StrictBool | None = None
    truncation_direction: TeiDirection | None = None
    instruction: StrictStr | None = None
    long_documents: LongDocuments | None = None


class TeiEmbedRequest(_Body):
    """``POST /embed``: text-embeddings-inference's embed. ``prompt_name: "query"`` embeds
    the inputs as queries."""

    inputs: StrictStr | list[StrictStr]
    normalize: StrictBool = True
    truncate: StrictBool | None = None
    truncation_direction: TeiDirection | None = None
    prompt_name: StrictStr | None = None
    dimensions: Positive | None = None
    instruction: StrictStr | None = None


TokenList = list[StrictInt]


class OpenAIEmbeddingRequest(_Body):
    """``POST /v1/embeddings``: OpenAI's embeddings (and vLLM's, which also takes token ids)."""

    input: StrictStr | list[StrictStr] | TokenList | list[TokenList]
    model: StrictStr | None = None
    dimensions: Positive | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: StrictStr | None = None
    input_type: Literal["query", "document", "search_query", "search_document"] | None = None
    instruction: StrictStr | None = None

    def is_query(self) -> bool:
        if self.model is not None and self.model.endswith(QUERY_SUFFIX):
            return True
        if self.model is not None and self.model.endswith(DOCUMENT_SUFFIX):
            return False
        return self.input_type in ("query", "search_query")


CohereInputType = Literal["search_query", "search_document", "classification", "clustering"]


class CohereEmbedRequest(_Body):
    """``POST /v2/embed``: Cohere's embed v2 (texts only; ``float`` and ``base64``
    embeddings, the types are checked by the endpoint so that its refusal names them)."""

    model: StrictStr | None = None
    texts: list[StrictStr]
    input_type: CohereInputType
    embedding_types: list[StrictStr] | None = None
    output_dimension: Positive | None = None
    truncate: CohereTruncate | None = None
    instruction: StrictStr | None = None


class ClassifyRequest(_Body):
    """``POST /classify``: vLLM's classify, as ``ServerOptions`` clients send it (each input
    the token ids of a whole reranker prompt; ``use_activation: false`` answers the raw
    log-odds, else P(yes))."""

    model: StrictStr | None = None
    input: list[TokenList]
    use_activation: StrictBool = True
