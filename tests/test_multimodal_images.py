"""Hostile and unusual images: each is a clear error naming the input, or a documented
result checked against what it should equal. Remote images are fetched only when allowed,
within a size cap and a timeout, from a real local HTTP server."""

from __future__ import annotations

import http.server
import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_core import ImageInputError, Qwen3RagError, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_core.multimodal.images import MAX_PIXELS, MIN_PIXELS, smart_resize
from qwen3_core.testing.vl_models import VLModelPaths, build_vl_test_models
from tests.options import CPU
from tests.test_multimodal_engine import noise, official_embedding

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def vl_models() -> VLModelPaths:
    return build_vl_test_models()


@pytest.fixture(scope="module")
def embedder(vl_models: VLModelPaths) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder(vl_models.embedding, backend=CPU)


def png_declaring(width: int, height: int) -> bytes:
    """A small, valid PNG whose header declares width x height pixels (a decompression bomb:
    its few compressed bytes would inflate to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    rows = zlib.compress(b"\0" * (width + 1) * 8)  # a few rows; the rest would follow
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_unreadable_images_are_named_errors(
    vl_models: VLModelPaths, embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    good = tmp_path / "good.png"
    noise(64, 64, 1).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    jpeg = tmp_path / "truncated.jpg"
    noise(200, 200, 2).save(jpeg, quality=95)
    (tmp_path / "cut.jpg").write_bytes(jpeg.read_bytes()[:-2000])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(
        b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8))
    )
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(20000, 20000))
    just_over = tmp_path / "just-over.png"
    just_over.write_bytes(png_declaring(9500, 9500))
    narrow = tmp_path / "narrow.png"
    Image.new("RGB", (1000, 4)).save(narrow)
    cases = {
        truncated: "could not be decoded",
        tmp_path / "cut.jpg": "could not be decoded",
        corrupt: "not an image Pillow can read",
        text: "not an image Pillow can read",
        bomb: "too large to decode",
        just_over: "9500 x 9500 pixels, more than",
        narrow: "aspect ratio is 250:1",
        tmp_path / "missing.png": "does not exist",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageInputError, match=reason) as raised:
            embedder.embed_documents(["fine", {"text": "x", "image": path}])
        assert str(raised.value).startswith("inputs[1]")
        assert isinstance(raised.value, Qwen3RagError) and isinstance(raised.value, ValueError)
    reranker = Qwen3VLReranker(vl_models.reranker, backend=CPU)
    with pytest.raises(ImageInputError, match=r"^documents\[1\]: .*not an image"):
        reranker.score("query", ["text", text])
    with pytest.raises(ImageInputError, match=r"^query: .*could not be decoded"):
        reranker.score(truncated, ["text"])


def test_unusual_formats_give_the_documented_image(
    vl_models: VLModelPaths, embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    rgb = noise(96, 96, 3)
    cmyk = tmp_path / "cmyk.jpg"
    rgb.convert("CMYK").save(cmyk)
    deep = tmp_path / "sixteen.png"
    values = np.random.default_rng(4).integers(0, 65536, (64, 96), dtype=np.uint16)
    Image.fromarray(values).save(deep)
    animated = tmp_path / "animated.gif"
    frames = [noise(64, 64, 5 + i).convert("P") for i in range(3)]
    frames[0].save(animated, save_all=True, append_images=frames[1:], duration=100)
    got = embedder.embed_documents([cmyk, deep, animated])
    # CMYK: Pillow's conversion, as the official code does it.
    assert np.abs(got[0] - official_embedding(vl_models.embedding, cmyk)).max() < TOLERANCE
    # 16 bits: scaled to 8 (the official convert("RGB") would clip every pixel to white).
    eight = Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")
    assert np.abs(got[1] - official_embedding(vl_models.embedding, eight)).max() < TOLERANCE
    white = Image.new("RGB", (96, 64), (255, 255, 255))
    assert np.abs(got[1] - official_embedding(vl_models.embedding, white)).max() > 0.01
    # Animated: the first frame.
    first = Image.open(animated).convert("RGB")
    assert np.abs(got[2] - official_embedding(vl_models.embedding, first)).max() < TOLERANCE


def test_transparent_palette_and_grey_are_pasted_on_white(
    embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    rgba = noise(64, 64, 6, "RGBA")
    palette = rgba.convert("RGB").convert("P")
    palette.info["transparency"] = 0
    grey_alpha = rgba.convert("LA")
    on_white = []
    for image in (palette, grey_alpha):
        expected = Image.new("RGB", image.size, (255, 255, 255))
        converted = image.convert("RGBA")
        expected.paste(converted, mask=converted.getchannel("A"))
        on_white.append(expected)
    got = embedder.embed_documents([palette, grey_alpha])
    assert np.abs(got - embedder.embed_documents(on_white)).max() < 1e-6


def test_a_huge_image_is_sized_to_the_official_bounds(embedder: Qwen3VLEmbedder) -> None:
    assert smart_resize(1200, 1600) == (1152, 1536)  # 1,728 tokens
    assert smart_resize(20000, 20000)[0] * smart_resize(20000, 20000)[1] <= MAX_PIXELS
    assert smart_resize(10, 10) == (64, 64) and MIN_PIXELS <= 64 * 64
    assert smart_resize(80, 112) == (64, 128)  # 2.5 and 3.5 patches: half to even
    (ids,) = embedder.tokenize([Image.new("RGB", (9000, 9000))])
    assert (ids == 151655).sum() == 1764  # 42 x 42 tokens: within 1,800


def test_a_str_is_always_text(embedder: Qwen3VLEmbedder, tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    noise(64, 64, 7).save(path)
    as_text, as_image = embedder.tokenize([str(path), path])
    assert not (as_text == 151655).any() and (as_image == 151655).any()


class _Images(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path == "/slow.png":
            time.sleep(3)
        if self.path == "/elsewhere.png":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/x.png")
            self.end_headers()
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(self.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    buffer = io.BytesIO()
    noise(64, 64, 8).save(buffer, format="PNG")
    _Images.body = buffer.getvalue()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_images_only_when_allowed(
    vl_models: VLModelPaths, embedder: Qwen3VLEmbedder, image_server: str
) -> None:
    url = f"{image_server}/a.png"
    with pytest.raises(ImageInputError, match=r"inputs\[0\].*allow_remote_images=True"):
        embedder.embed_documents([{"image": url}])
    allowed = Qwen3VLEmbedder(
        vl_models.embedding,
        backend=CPU,
        allow_remote_images=True,
        remote_image_max_bytes=len(_Images.body),
        remote_image_timeout=1.0,
    )
    fetched = allowed.embed_documents([{"image": url}])
    local = allowed.embed_documents([Image.open(io.BytesIO(_Images.body))])
    assert np.abs(fetched - local).max() < 1e-6
    small = Qwen3VLEmbedder(
        vl_models.embedding, backend=CPU, allow_remote_images=True, remote_image_max_bytes=100
    )
    with pytest.raises(ImageInputError, match="larger than remote_image_max_bytes=100"):
        small.embed_documents([{"image": url}])
    with pytest.raises(ImageInputError, match=r"inputs\[0\]: could not fetch .*slow"):
        allowed.embed_documents([{"image": f"{image_server}/slow.png"}])
    with pytest.raises(ImageInputError, match="not http"):
        allowed.embed_documents([{"image": f"{image_server}/elsewhere.png"}])
    with pytest.raises(ImageInputError, match="could not fetch"):
        allowed.embed_documents([{"image": "http://127.0.0.1:9/none.png"}])
