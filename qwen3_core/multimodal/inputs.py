"""Internal: what a multimodal input may be, checked before any model work.

- A ``str`` is text (never a path or an address: text from documents must not open files).
- An image is a ``PIL.Image.Image`` or a ``pathlib.Path``.
- A mapping has ``"text"`` (a str, or a list of them) and/or ``"image"`` (an image, encoded
  image ``bytes``, a path as a str, an ``http(s)://`` address, or a list of these).
  Addresses are fetched only when the engine allows remote images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, Union

from qwen3_core.validation import check_text

if TYPE_CHECKING:
    from PIL import Image

ImageSource: TypeAlias = Union["Image.Image", Path, bytes, str]
"""One image: a decoded image, a file, encoded bytes, or an ``http(s)://`` address."""
MultimodalInput: TypeAlias = Union[str, "Image.Image", "os.PathLike[str]", Mapping[str, Any]]
"""What the engines embed and judge: text, an image, or a mapping of both."""

_KEYS = ("text", "image")


@dataclass(frozen=True)
class Item:
    """One input, checked: its texts and images in the order the official prompt puts them
    (images first, then texts), and how errors name it."""

    texts: tuple[str, ...]
    images: tuple[ImageSource, ...]
    label: str
    """The argument and position, e.g. ``documents[3]``."""

    @property
    def is_empty(self) -> bool:
        """Neither text nor image: the official prompt says "NULL"."""
        return not self.texts and not self.images


def _is_image(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # without Pillow nothing is a decoded image
        return False
    return isinstance(value, Image.Image)


def _is_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def _image(value: Any, label: str) -> ImageSource:
    if _is_image(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, os.PathLike):
        return Path(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        if not len(value):
            raise ValueError(f"{label} is empty bytes, not an encoded image")
        return bytes(value)
    if isinstance(value, str):
        check_text(label, value)
        if not value.strip():
            raise ValueError(f"{label} is an empty string, not an image path or address")
        return value if _is_url(value) else Path(value)
    raise TypeError(
        f"{label} must be a PIL.Image.Image, a pathlib.Path, bytes, a path or an http(s) "
        f"address, got {type(value).__name__}"
    )


def _mapping(value: Mapping[Any, Any], label: str) -> Item:
    unknown = [key for key in value if key not in _KEYS]
    if unknown:
        hint = " (video input is not supported)" if "video" in unknown else ""
        raise TypeError(
            f"{label} has the key(s) {', '.join(map(repr, unknown))}{hint}: a multimodal "
            "input takes 'text' and 'image'"
        )
    text = value.get("text")
    texts: list[str] = []
    if isinstance(text, str):
        texts = [check_text(f"{label}['text']", text)]
    elif isinstance(text, Sequence) and not isinstance(text, (bytes, bytearray)):
        texts = [check_text(f"{label}['text'][{i}]", t) for i, t in enumerate(text)]
    elif text is not None:
        raise TypeError(
            f"{label}['text'] must be a str or a list of str, got {type(text).__name__}"
        )
    image = value.get("image")
    if isinstance(image, (list, tuple)):
        images = [_image(v, f"{label}['image'][{i}]") for i, v in enumerate(image)]
    else:
        images = [] if image is None else [_image(image, f"{label}['image']")]
    return Item(tuple(texts), tuple(images), label)


def check_input(value: Any, label: str) -> Item:
    """One input, checked and normalised.

    Raises:
        TypeError: The input, or a part of it, is of a type no input takes.
        ValueError: A text is not valid Unicode, or an image part is empty.
    """
    if isinstance(value, str):
        return Item((check_text(label, value),), (), label)
    if isinstance(value, Mapping):
        return _mapping(value, label)
    if _is_image(value) or isinstance(value, os.PathLike):
        return Item((), (_image(value, label),), label)
    raise TypeError(
        f"{label} must be a str (text), a PIL.Image.Image or pathlib.Path (an image), or a "
        f"mapping with 'text' and/or 'image', got {type(value).__name__}"
    )


def check_inputs(name: str, values: Any) -> list[Item]:
    """A list of inputs, each checked (see ``check_input``), named ``name[i]`` in errors.

    Raises:
        TypeError: ``values`` is not a list, or an input is of a wrong type.
        ValueError: An input's text is not valid Unicode, or an image part is empty.
    """
    if isinstance(values, (str, bytes, bytearray, Mapping)) or _is_image(values):
        raise TypeError(
            f"{name} must be a list of inputs, got a bare {type(values).__name__} (wrap a "
            "single input in a list)"
        )
    if not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of inputs, got {type(values).__name__}")
    return [check_input(value, f"{name}[{index}]") for index, value in enumerate(values)]
