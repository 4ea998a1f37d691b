"""Internal: opening images safely and sizing them as the official Qwen3-VL code does.

Each image is decoded with Pillow's own checks kept on (a truncated file is an error, not a
half-grey picture), refused before decoding when its header declares more than
``MAX_SOURCE_PIXELS`` pixels (a decompression bomb), turned into RGB, and resized to a
multiple of 32 pixels within the official bounds (``MIN_PIXELS`` to ``MAX_PIXELS``) before
any array is built from it, so an image costs at most 1,800 tokens.

Conversions: an RGBA image is pasted on white, as the official code does; other images with
transparency (palette, grey with alpha) are too. 16-bit images are scaled to 8 bits (the
official ``convert("RGB")`` would clip them to white). CMYK is converted by Pillow. An
animated file gives its first frame. EXIF orientation is not applied (the official code
does not apply it either).
"""

from __future__ import annotations

import io
import math
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_core.defaults import REMOTE_IMAGE_MAX_BYTES, REMOTE_IMAGE_TIMEOUT
from qwen3_core.errors import ImageInputError, first_line

if TYPE_CHECKING:
    from PIL import Image

    from qwen3_core.multimodal.inputs import ImageSource

PATCH_SIZE = 16
MERGE_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE
"""An image's sides are multiples of this: one image token covers FACTOR x FACTOR pixels."""
MIN_PIXELS = 4 * FACTOR * FACTOR
"""The official lower bound: at least 4 image tokens."""
MAX_PIXELS = 1800 * FACTOR * FACTOR
"""The official upper bound: at most 1,800 image tokens."""
MAX_ASPECT_RATIO = 200
"""The official limit on the ratio of the longer side to the shorter."""
MAX_SOURCE_PIXELS = 89_478_485
"""The largest image decoded (about 9,459 x 9,459, 0.27 GB as RGB): the size above which
Pillow warns of a decompression bomb. A larger one is refused before its pixels are read,
whatever Pillow's own limit is set to."""
_16_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class RemoteImages:
    """Whether ``http(s)://`` images are fetched, and within which limits.

    A library that fetches addresses found in documents can be made to reach internal
    services (server-side request forgery), so fetching is off unless turned on.
    """

    allowed: bool = False
    max_bytes: int = REMOTE_IMAGE_MAX_BYTES
    """The largest download; a longer one is refused."""
    timeout: float = REMOTE_IMAGE_TIMEOUT
    """Seconds for the connection and for each read."""


def smart_resize(height: int, width: int) -> tuple[int, int]:
    """The (height, width) the official code resizes an image to: each side rounded to a
    multiple of 32 (half to even, Python's ``round``), then scaled down or up, keeping the
    aspect ratio, into ``MIN_PIXELS``..``MAX_PIXELS``.

    Raises:
        ValueError: The longer side is more than ``MAX_ASPECT_RATIO`` times the shorter.
    """
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"its aspect ratio is {max(height, width) / min(height, width):.0f}:1, more than "
            f"the model's {MAX_ASPECT_RATIO}:1"
        )
    h_bar = max(FACTOR, round(height / FACTOR) * FACTOR)
    w_bar = max(FACTOR, round(width / FACTOR) * FACTOR)
    if h_bar * w_bar > MAX_PIXELS:
        beta = math.sqrt(height * width / MAX_PIXELS)
        h_bar = max(FACTOR, math.floor(height / beta / FACTOR) * FACTOR)
        w_bar = max(FACTOR, math.floor(width / beta / FACTOR) * FACTOR)
    elif h_bar * w_bar < MIN_PIXELS:
        beta = math.sqrt(MIN_PIXELS / (height * width))
        h_bar = math.ceil(height * beta / FACTOR) * FACTOR
        w_bar = math.ceil(width * beta / FACTOR) * FACTOR
    return h_bar, w_bar


def image_tokens(height: int, width: int) -> int:
    """Tokens an image of this size costs in the prompt."""
    h, w = smart_resize(height, width)
    return (h // FACTOR) * (w // FACTOR)


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow comes with transformers
        raise ImportError("image inputs need Pillow: pip install pillow") from exc
    return Image


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) addresses only (urllib would also follow ftp://)."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        if not newurl.lower().startswith(("http://", "https://")):
            raise ImageInputError(f"the server redirected to {newurl!r}, which is not http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, remote: RemoteImages, label: str) -> bytes:
    if not remote.allowed:
        raise ImageInputError(
            f"{label} is the address {url!r}: remote images are fetched only when the engine "
            "is made with allow_remote_images=True"
        )
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        with opener.open(url, timeout=remote.timeout) as response:
            data: bytes = response.read(remote.max_bytes + 1)
    except ImageInputError as exc:
        raise ImageInputError(f"{label} ({url!r}): {exc}") from None
    except Exception as exc:  # urllib's errors, socket timeouts, bad addresses
        raise ImageInputError(f"{label}: could not fetch {url!r}: {first_line(exc)}") from exc
    if len(data) > remote.max_bytes:
        raise ImageInputError(
            f"{label}: {url!r} is larger than remote_image_max_bytes={remote.max_bytes}"
        )
    return data


def _decoded_rgb(source: ImageSource, label: str, remote: RemoteImages) -> Image.Image:
    """The decoded image (first frame) in RGB, its size checked before its pixels are read;
    a file is closed before this returns (an animated one too, which Pillow keeps open)."""
    Image = _pillow()
    if isinstance(source, Image.Image):
        _check_size(source, label)
        return _rgb(source)
    what = f"'{source}'" if isinstance(source, Path) else "the image"
    if isinstance(source, str):
        what = repr(source)
        source = _fetch(source, remote, label)
    if isinstance(source, Path) and not source.is_file():
        raise ImageInputError(f"{label}: the image file '{source}' does not exist")
    opened = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            # Pillow warns between half its limit and its limit; the size is checked here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(opened) as image:
                width, height = image.size
                if width * height > MAX_SOURCE_PIXELS:
                    raise ImageInputError(
                        f"{label}: {what} is {width} x {height} pixels, more than the "
                        f"{MAX_SOURCE_PIXELS} decoded at most (a decompression bomb, or a "
                        "scan to shrink first)"
                    )
                _check_size(image, label)
                image.load()
                return _rgb(image)
    except ImageInputError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{label}: {what} is too large to decode: {exc}") from None
    except Image.UnidentifiedImageError:
        raise ImageInputError(f"{label}: {what} is not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise ImageInputError(f"{label}: {what} could not be decoded: {first_line(exc)}") from None


def _check_size(image: Image.Image, label: str) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageInputError(f"{label}: the image is {width} x {height} pixels")
    try:
        smart_resize(height, width)
    except ValueError as exc:
        raise ImageInputError(f"{label}: the image is {width} x {height} pixels: {exc}") from None


def _rgb(image: Image.Image) -> Image.Image:
    Image = _pillow()
    if image.mode in _16_BIT_MODES:
        # 16 significant bits to 8; "I" (32-bit) holds 16-bit PNGs in some Pillow versions.
        values = np.asarray(image, dtype=np.int64)
        image = Image.fromarray(np.clip(values >> 8, 0, 255).astype(np.uint8), mode="L")
    transparent = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if transparent:
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white  # type: ignore[no-any-return]
    return image.convert("RGB")  # type: ignore[no-any-return]


def load_image(source: ImageSource, label: str, remote: RemoteImages) -> Image.Image:
    """The image as the model sees it: RGB, resized (bicubic) to the official bounds.

    Raises:
        ImageInputError: The image cannot be read, is too large or too narrow, or is an
            address while remote images are off; the message names ``label``.
    """
    Image = _pillow()
    image = _decoded_rgb(source, label, remote)
    target_h, target_w = smart_resize(image.height, image.width)
    return image.resize((target_w, target_h), Image.Resampling.BICUBIC)  # type: ignore[no-any-return]
