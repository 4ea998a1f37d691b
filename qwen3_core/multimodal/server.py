"""Internal: the Qwen3-VL engines as clients of vLLM servers (``backend=ServerOptions(...)``).

The engine builds each prompt here, as for the transformers backend (the official prompt,
images loaded with the hostile-image checks and resized to the official bounds), and the
server only runs the model. What is sent:

- A prompt without images: its token ids, as the text engines' server client sends them
  (``POST /v1/embeddings`` with ``input``; ``POST /classify`` with ``input`` and
  ``use_activation: false``), so any text is read literally and truncation is ours.
- A prompt with images: vLLM takes images only in chat messages, so the prompt goes as one
  user message whose text is the whole prompt (the template already applied, one
  ``<|vision_start|><|image_pad|><|vision_end|>`` per image), followed by the images as PNG
  ``data:`` URLs in prompt order, with ``chat_template`` ``{{ messages[0]['content'] }}``:
  the server renders that text unchanged and tokenises it, and its Qwen3-VL processor
  expands each ``<|image_pad|>`` to the image's tokens. ``mm_processor_kwargs`` gives the
  official pixel bounds, so the server does not resize the already sized images (the
  checkpoints' ``preprocessor_config.json`` bounds differ). Embeddings batch prompts
  (``messages`` as a list of conversations); ``/classify`` takes one conversation per
  request.

The server tokenises such a prompt's text itself, matching special tokens in it, so before
sending, the text is tokenised as the server will tokenise it and compared with the ids the
engine built; where they differ the input is refused with a ``ServerError`` that says why,
rather than scored on other tokens: text that holds a special token (``<|im_end|>``, ...)
beside an image. A prompt with images longer than ``max_length`` is cut as on the
transformers backend (its first text tokens kept) and its kept tokens are turned back into
text; a cut inside a character cannot be written as text and is refused.

The server needs ``--runner pooling``, ``--trust-request-chat-template`` and
``--trust-request-mm-kwargs`` (the request's template and image processor settings) and, for
the reranker, ``--hf-overrides`` (``VL_RERANKER_OVERRIDES``): the yes/no rows of the lm_head
folded into a one-output classifier whose raw output is the log-odds. Each answer's
``usage.prompt_tokens`` is checked against the tokens the engine built.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_core.backend_options import ServerOptions
from qwen3_core.backends.http import ServerPool
from qwen3_core.backends.server import ServerEmbeddingBackend, ServerRerankBackend
from qwen3_core.backends.vllm import reranker_overrides
from qwen3_core.errors import ModelKindError, ServerError
from qwen3_core.hub import HubOptions, resolve_model_folder
from qwen3_core.multimodal import prompts
from qwen3_core.multimodal.encoding import PromptEncoder
from qwen3_core.multimodal.images import (
    MAX_PIXELS,
    MIN_PIXELS,
    PATCH_SIZE,
    RemoteImages,
    load_image,
)
from qwen3_core.multimodal.inputs import Item
from qwen3_core.tokenization import LiteralTokenizer
from qwen3_core.variants import Variant, read_config

if TYPE_CHECKING:
    from PIL import Image

    from qwen3_core.multimodal.loading import VLKind

VL_RERANKER_ARCHITECTURE = "Qwen3VLForSequenceClassification"
VL_RERANKER_OVERRIDES: dict[str, Any] = {
    **reranker_overrides("no", "yes"),
    "architectures": [VL_RERANKER_ARCHITECTURE],
}
"""The reranker server's ``--hf-overrides``."""
VL_TRUST_FLAGS = ("--trust-request-chat-template", "--trust-request-mm-kwargs")
"""What lets a request carry its chat template and its image processor settings."""
VL_SERVER_FLAGS = " ".join(("--runner pooling", *VL_TRUST_FLAGS))
VL_RERANKER_SERVER_FLAGS = f"{VL_SERVER_FLAGS} --hf-overrides '{json.dumps(VL_RERANKER_OVERRIDES)}'"
PROMPT_TEMPLATE = "{{ messages[0]['content'] }}"
"""The chat template sent with each request: the message's text is the whole prompt."""
PIXEL_BOUNDS = {"size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}}
"""The official pixel bounds, for the server's image processor."""


@dataclass(frozen=True)
class OnServers:
    """What an engine on servers holds: the checkpoint's files and the servers' client."""

    folder: Path
    encoder: PromptEncoder
    hidden_size: int
    backend: VLServerEmbedding | VLServerRerank


def open_on_servers(
    model: str | os.PathLike[str],
    kind: VLKind,
    options: ServerOptions,
    max_length: int,
    remote: RemoteImages,
    hub: HubOptions,
) -> OnServers:
    """The checkpoint's config and tokenizer (for a hub id, downloaded without the weights),
    checked to be a Qwen3-VL model's, and a client of ``options``' servers.

    Raises:
        ModelKindError: Not a Qwen3-VL checkpoint (a text Qwen3 model is refused naming
            the class that loads it), or a tokenizer without Qwen3-VL's tokens.
        ModelNotFoundError: Neither a folder nor a hub id that can be fetched.
    """
    folder = resolve_model_folder(model, hub, weights=False)
    config = read_config(folder, kind, vision=True)
    for part in ("text_config", "vision_config"):
        if not isinstance(config.get(part), dict):
            raise ModelKindError(f"'{folder / 'config.json'}' has no {part}")
    tokenizer = LiteralTokenizer.from_folder(folder)
    encoder = PromptEncoder(folder, tokenizer, max_length, remote)
    hidden_size = int(config["text_config"]["hidden_size"])
    pool, name = server_pool(options), os.fspath(model)
    backend: VLServerEmbedding | VLServerRerank
    if kind == "embedding":
        backend = VLServerEmbedding(pool, name, hidden_size=hidden_size)
    else:
        for token in ("yes", "no"):
            if tokenizer.token_to_id(token) is None:
                raise ModelKindError(f"'{folder}': the tokenizer has no {token!r} token")
        backend = VLServerRerank(pool, name)
    return OnServers(folder, encoder, hidden_size, backend)


@dataclass(frozen=True)
class ChatPrompt:
    """A prompt with images, as sent: its text and its images' PNG ``data:`` URLs."""

    text: str
    images: list[str]
    length: int
    """Tokens, each image's included: what request sizes count."""

    def __len__(self) -> int:
        return self.length

    def conversation(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.text}]
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in self.images]
        return [{"role": "user", "content": parts}]


ServerPrompt = np.ndarray | ChatPrompt
"""Token ids (a prompt without images) or a chat prompt."""


def _png_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_label(item: Item, index: int) -> str:
    return item.label if len(item.images) == 1 else f"{item.label}, image {index}"


def _prompt_text(segments: list[prompts.Segment]) -> str:
    """The prompt as text, each image as one ``<|image_pad|>`` (the server expands it)."""
    return "".join(
        s.token
        if isinstance(s, prompts.Special)
        else prompts.IMAGE_PAD
        if isinstance(s, prompts.ImageSlot)
        else s
        for s in segments
    )


@functools.cache
def _byte_values() -> dict[str, int]:
    """The byte each character of a byte-level BPE token stands for (GPT-2's
    ``bytes_to_unicode``, reversed): printable bytes stand for themselves, the others for
    the characters from U+0100 on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + n): b for n, b in enumerate(others)})
    return table


class PromptSender:
    """Turns the engine's prompts into what the server is sent."""

    def __init__(self, encoder: PromptEncoder) -> None:
        self.encoder = encoder
        self._patches = np.zeros((0, 3 * 2 * PATCH_SIZE * PATCH_SIZE), dtype=np.float32)
        tokenizer = encoder.tokenizer
        self._specials = {
            tokenizer.token_to_id(token): token
            for token in (
                prompts.IM_START,
                prompts.IM_END,
                prompts.VISION_START,
                prompts.VISION_END,
                prompts.IMAGE_PAD,
            )
        }

    def _text_of(self, ids: np.ndarray) -> str | None:
        """The text of a cut prompt's ids (each image one ``<|image_pad|>``); None when the
        cut falls inside a character. Whether the server reads the same ids from it is
        checked after."""
        out: list[str] = []
        run: list[int] = []
        values = _byte_values()
        try:
            for token_id in ids.tolist():
                special = self._specials.get(token_id)
                if special is None:
                    token = self.encoder.tokenizer.id_to_token(token_id)
                    if token is None:
                        return None
                    run += [values[c] for c in token]
                    continue
                out += [bytes(run).decode("utf-8"), special]
                run = []
            out.append(bytes(run).decode("utf-8"))
        except (KeyError, UnicodeDecodeError):
            return None
        return "".join(out)

    def images(self, item: Item) -> list[tuple[str, np.ndarray]]:
        """Each image of ``item`` loaded, checked and sized, as a PNG ``data:`` URL (encoded
        once, however many prompts show it), with its (t, h, w) patch grid."""
        out = []
        for index, source in enumerate(item.images):
            image = load_image(source, _image_label(item, index), self.encoder.remote)
            grid = np.array([1, image.height // PATCH_SIZE, image.width // PATCH_SIZE])
            out.append((_png_url(image), grid))
        return out

    def prompt(
        self,
        segments: list[prompts.Segment],
        images: Sequence[list[tuple[str, np.ndarray]]],
        label: str,
    ) -> tuple[ServerPrompt, bool]:
        """``segments`` as sent, and whether its text was cut to ``max_length``;
        ``images[owner][index]`` as ``images`` gives them.

        Raises:
            ServerError: A prompt with images that cannot be sent exactly (see the module).
        """
        grids = [[(self._patches, grid) for _, grid in owner] for owner in images]
        ids = self.encoder.encode(segments, grids, label)
        if not any(isinstance(s, prompts.ImageSlot) for s in segments):
            return ids.ids, ids.truncated
        pad = self.encoder.image_pad_id
        ours = ids.ids[np.r_[True, (ids.ids[1:] != pad) | (ids.ids[:-1] != pad)]]
        text = self._text_of(ours) if ids.truncated else _prompt_text(segments)
        if text is None:
            raise ServerError(
                f"{label} is longer than max_length={self.encoder.max_length} tokens with its "
                "images, and its text is cut inside a character: a prompt with images goes to "
                "the server as text, which cannot hold part of a character; shorten its text "
                "or change max_length"
            )
        # What the server will read: the text with its special tokens matched.
        served = np.asarray(self.encoder.tokenizer.encode_template(text), dtype=np.int64)
        if not np.array_equal(served, ours):
            raise ServerError(
                f"{label}: its text holds a special token (such as {prompts.IM_END!r}), or is "
                "cut where its tokens read otherwise as text; a prompt with images goes to the "
                "server as text, which the server would read as other tokens"
            )
        urls = [images[s.owner][s.index][0] for s in segments if isinstance(s, prompts.ImageSlot)]
        return ChatPrompt(text, urls, len(ids.ids)), ids.truncated


def _chat_extras() -> dict[str, Any]:
    return {
        "chat_template": PROMPT_TEMPLATE,
        "add_generation_prompt": False,
        "mm_processor_kwargs": PIXEL_BOUNDS,
    }


def _chat_refused(exc: ServerError) -> ServerError:
    """A refused prompt with images, with what its request needs of the server."""
    if "--trust-request-" in str(exc):
        why = "start the server with"
    else:
        why = (
            "a prompt with images goes as chat messages with images, which needs vLLM started with"
        )
    return ServerError(f"{exc} ({why} {VL_SERVER_FLAGS}, see docs/multimodal.md, 'On vLLM')")


def _check_usage(where: str, answer: Any, sent: Sequence[Any]) -> None:
    """The server's count of prompt tokens must be the engine's: another count means it
    read the prompt or sized an image otherwise (an answer without the count passes)."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    expected = sum(len(p) for p in sent)
    if type(tokens) is int and tokens != expected:
        raise ServerError(
            f"{where} read {tokens} prompt tokens where the engine built {expected}: it "
            "tokenised the prompt or sized an image otherwise, so its results would not be "
            "the model's for these inputs; is the server running another model, or an image "
            "processor that ignores mm_processor_kwargs?"
        )


class VLServerEmbedding(ServerEmbeddingBackend):
    """Qwen3-VL-Embedding on vLLM servers: ids for text-only prompts, chat batches for
    prompts with images."""

    def _body(self, sequences: Sequence[Any]) -> dict[str, Any]:
        if isinstance(sequences[0], ChatPrompt):
            return {
                "model": self.model,
                "messages": [p.conversation() for p in sequences],
                "encoding_format": "float",
                **_chat_extras(),
            }
        return super()._body(sequences)

    def _request(self, sequences: Sequence[Any]) -> np.ndarray:
        answer = self.pool.request("POST", self.path, self._body(sequences))
        if isinstance(sequences[0], ChatPrompt):
            _check_usage(self.where, answer, sequences)
        return self._parse(answer, len(sequences))

    def embed_prompts(self, prompts_: Sequence[ServerPrompt]) -> np.ndarray:
        """float32 (n, hidden_size), input order."""
        out = np.empty((len(prompts_), self.hidden_size), dtype=np.float32)
        for chat in (False, True):
            rows = [i for i, p in enumerate(prompts_) if isinstance(p, ChatPrompt) == chat]
            if rows:
                try:
                    batch: list[Any] = [prompts_[i] for i in rows]
                    out[rows] = self.embed(batch)
                except ServerError as exc:
                    raise (_chat_refused(exc) if chat else exc) from exc
        return out


class VLServerRerank(ServerRerankBackend):
    """Qwen3-VL-Reranker on vLLM servers, as a one-output classifier without its
    activation: ids for text-only prompts, one chat request per prompt with images."""

    def __init__(self, pool: ServerPool, model: str) -> None:
        super().__init__(pool, model, Variant("reranker", "base", "Qwen3-VL"))
        self._flags = VL_RERANKER_SERVER_FLAGS

    def _split(self, sequences: Sequence[Any]) -> list[slice]:
        if sequences and isinstance(sequences[0], ChatPrompt):
            return [slice(i, i + 1) for i in range(len(sequences))]
        return super()._split(sequences)

    def _body(self, sequences: Sequence[Any], *, activation: bool = False) -> dict[str, Any]:
        if isinstance(sequences[0], ChatPrompt):
            (prompt,) = sequences
            return {
                "model": self.model,
                "messages": prompt.conversation(),
                "use_activation": activation,
                **_chat_extras(),
            }
        return super()._body(sequences, activation=activation)

    def _request(self, sequences: Sequence[Any]) -> np.ndarray:
        answer = self.pool.request("POST", self.path, self._body(sequences))
        if isinstance(sequences[0], ChatPrompt):
            _check_usage(self.where, answer, sequences)
        return self._parse(answer, len(sequences))

    def _probe(self, sequences: Sequence[Any], raw: np.ndarray) -> tuple[list[int], Any]:
        if not isinstance(sequences[0], ChatPrompt):
            return super()._probe(sequences, raw)
        rows = self._probe_rows(raw)[:1]  # one conversation per request
        return rows, self._body([sequences[rows[0]]], activation=True)

    def logits_of(self, prompts_: Sequence[ServerPrompt]) -> np.ndarray:
        """The log-odds of each prompt, float32 (n,), input order."""
        out = np.empty(len(prompts_), dtype=np.float32)
        for chat in (False, True):
            rows = [i for i, p in enumerate(prompts_) if isinstance(p, ChatPrompt) == chat]
            if rows:
                try:
                    out[rows] = self._logits([prompts_[i] for i in rows])
                except ServerError as exc:
                    raise (_chat_refused(exc) if chat else exc) from exc
        return out


def server_pool(options: ServerOptions) -> ServerPool:
    """The pool of ``options``' servers, as the text engines' server client builds it."""
    return ServerPool(
        options.base_url,  # as given: ``urls`` hides the user information
        api_key=options.api_key,
        timeout=float(options.timeout),
        max_concurrency=options.max_concurrency,
        max_retries=options.max_retries,
    )
