"""Internal: the image a retrieved document or node carries, as an engine input, for the
LangChain and LlamaIndex adapters (framework-free; no model logic).

A document's image is, in this order (the order LlamaIndex's ``ImageNode`` resolves its
own): base64 (plain, or a ``data:image/...;base64,`` address), a local file path, an
``http(s)://`` address (fetched only when the engine allows remote images). A path is always
a file, never fetched; an address is never opened as a file.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from qwen3_core.errors import ImageInputError
from qwen3_core.multimodal.inputs import MultimodalInput

_DATA_PREFIX = "data:"


def _str(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{label} must be a str, got {type(value).__name__}")
    return value


def decode_base64(value: Any, label: str) -> bytes:
    """The bytes of a base64 image, plain or as a ``data:image/...;base64,`` address.

    Raises:
        TypeError: ``value`` is not a str.
        ImageInputError: It is not valid base64, or decodes to nothing.
    """
    text = _str(value, label).strip()
    if text.startswith(_DATA_PREFIX):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ImageInputError(f"{label} is a data address that is not base64 ({header!r})")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(f"{label} is not valid base64: {exc}") from None
    if not data:
        raise ImageInputError(f"{label} is empty, not a base64 image")
    return data


def document_input(
    text: str | None,
    *,
    image: Any = None,
    image_path: Any = None,
    image_url: Any = None,
    label: str,
) -> MultimodalInput:
    """The engine input of one document: its image (the first given of ``image`` (base64),
    ``image_path``, ``image_url``) with its text, if any; without an image, the text.
    ``label`` names the document, and ``label[key]`` the part, in errors.

    Raises:
        TypeError: A part is not a str.
        ValueError: ``image_url`` is not an http(s) or base64 data address
            (``ImageInputError``), or the base64 is not valid.
    """
    source: bytes | Path | str | None = None
    if image is not None:
        source = decode_base64(image, f"{label}['image']")
    elif image_path is not None:
        path = _str(image_path, f"{label}['image_path']")
        if not path.strip():
            raise ImageInputError(f"{label}['image_path'] is an empty string, not a file")
        source = Path(path)
    elif image_url is not None:
        url = _str(image_url, f"{label}['image_url']").strip()
        if url.startswith(_DATA_PREFIX):
            source = decode_base64(url, f"{label}['image_url']")
        elif url[:8].lower().startswith(("http://", "https://")):
            source = url  # the engine fetches it only if allowed, and names the input if not
        else:
            raise ImageInputError(
                f"{label}['image_url'] is {url[:80]!r}, not an http(s) or base64 data address "
                "(a local file goes in 'image_path')"
            )
    if source is None:
        return "" if text is None else text
    return {"image": source} if not text else {"image": source, "text": text}
