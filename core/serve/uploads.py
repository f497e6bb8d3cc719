"""What a client sent to ``POST /predict`` (image bytes, never a URL or path), read within
limits and checked before decoding; every refusal is a ``Problem`` the app answers as JSON."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncGenerator
from clf.infer.decode import pillow_problem

if TYPE_CHECKING:
    from starlette.requests import Request

# What tf.io.decode_image reads, in Pillow's names; MPO is cameras' JPEG with a preview appended.
DECODABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF"})
RAW_TYPES = ("image/", "application/octet-stream")
CLOSE = {"Connection": "close"}


class Problem(Exception):
    """A request the server refuses: ``status`` (4xx/5xx), a message, optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.message, self.headers = status, message, headers or {}
        super().__init__(message)


@dataclass
class Upload:
    name: str
    data: bytes


def drain_limit(max_upload_bytes: int) -> int:
    """How much of a refused body ``discard_body`` reads before closing instead (it costs time, not memory)."""
    return max(4 * max_upload_bytes, 64 * 2**20)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**18 else f"{n} bytes"


def _declared_length(request: "Request") -> int | None:
    """The Content-Length header, when it is a plain number."""
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The request body: 413 past ``max_bytes`` (by Content-Length, else while reading), 408 past ``timeout`` s."""
    declared = _declared_length(request)
    if declared is not None and declared > max_bytes:
        raise Problem(413, f"The request body is {_mib(declared)}; the limit is {_mib(max_bytes)} "
                           f"(--max-upload-mb). Send fewer or smaller images per request.",
                      await discard_body(request, drain_limit(max_bytes), timeout))

    async def read() -> bytes | int:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                return size  # over the limit: what is read is dropped, the rest below
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        body = await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise Problem(408, f"The request body took over {timeout:g} s to arrive; expected the "
                           f"whole upload sooner. Send it again.", dict(CLOSE)) from None
    if isinstance(body, int):
        raise Problem(413, f"The request body passed {_mib(max_bytes)}, the limit "
                           f"(--max-upload-mb). Send fewer or smaller images per request.",
                      await discard_body(request, drain_limit(max_bytes), timeout, body))
    return body


async def discard_body(request: "Request", max_bytes: int, timeout: float, read: int = 0) -> dict[str, str]:
    """Drop the rest of a refused body, up to ``max_bytes`` in all (``read`` already) within ``timeout`` s:
    a client still sending (urllib, requests) would see a reset, not the answer. Returns its headers
    (``Connection: close`` when not all was read)."""
    declared = _declared_length(request)
    if declared is not None and declared > max_bytes:
        return dict(CLOSE)  # not worth reading: the client is cut off either way

    async def drop() -> bool:
        size = read
        while True:
            message = await request.receive()
            if message["type"] != "http.request":  # the client hung up
                return False
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
            if size > max_bytes:
                return False

    try:
        return {} if await asyncio.wait_for(drop(), timeout) else dict(CLOSE)
    except TimeoutError:
        return dict(CLOSE)


async def parse_uploads(request: Request, body: bytes, max_images: int) -> list[Upload]:
    """A read request's images: every multipart file part, or the whole body for an image content type."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind.startswith(RAW_TYPES):
        return [Upload(request.query_params.get("name") or "upload", body)]
    if kind != "multipart/form-data":
        raise Problem(415, f"Content-Type {kind or '(none)'!r} is not accepted; expected multipart/form-data "
                           f"with image files, or the raw bytes of one image with an image/* "
                           f"Content-Type. The server only reads images sent in the request; it "
                           f"never fetches URLs or file paths.")

    async def chunks() -> AsyncGenerator[bytes, None]:  # the body is read already (within its limit)
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=max_images,
                                     max_fields=max_images + 16).parse()
    except MultiPartException as exc:
        status = 413 if "Too many" in exc.message else 400
        raise Problem(status, f"Could not read the multipart form: {exc.message} (at most {max_images} "
                              f"images a request, --max-images).") from None
    except (KeyError, ValueError) as exc:  # no boundary, or a broken part header
        raise Problem(400, f"Malformed multipart form ({type(exc).__name__}: {exc}); expected what "
                           f"curl -F file=@photo.jpg or a browser's FormData sends.") from None
    try:  # text fields carry no image; nothing named in them is ever fetched
        uploads = [Upload(value.filename or key, await value.read())
                   for key, value in form.multi_items() if not isinstance(value, str)]
    finally:
        await form.close()
    if not uploads:
        raise Problem(400, "The form holds no file; expected one or more image files (field name "
                           "'file', say: curl -F file=@photo.jpg).")
    return uploads


def check_image(upload: Upload, max_pixels: int) -> int:
    """From the header alone, refuse what TensorFlow cannot decode or what exceeds
    ``max_pixels`` (a decompression bomb); returns the pixels it will decode to."""
    from PIL import Image, UnidentifiedImageError

    if not upload.data:
        raise Problem(400, f"{upload.name!r} is empty (0 bytes); expected an image file.")
    try:
        with Image.open(io.BytesIO(upload.data)) as im:
            fmt, (w, h) = im.format, im.size
            frames = getattr(im, "n_frames", 1) if fmt == "GIF" else 1
    except Image.DecompressionBombError:
        raise Problem(413, f"{upload.name!r} claims so many pixels that Pillow refuses to open it; the "
                           f"limit is {max_pixels:,} pixels (--max-pixels).") from None
    except UnidentifiedImageError:
        raise Problem(415, f"{upload.name!r} is not an image ({len(upload.data)} bytes, format unknown); "
                           f"expected JPEG, PNG, BMP or GIF.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Problem(422, f"{upload.name!r} has a broken image header: {exc or type(exc).__name__}; "
                           f"expected a complete JPEG, PNG, BMP or GIF file.") from None
    if fmt not in DECODABLE_FORMATS:
        raise Problem(415, f"{upload.name!r} is a {fmt} image; expected JPEG, PNG, BMP or GIF (what "
                           f"'clf predict' reads). Convert it first.")
    if w * h * frames > max_pixels:
        what = f"{w}x{h} pixels" + (f" in {frames} frames" if frames > 1 else "")
        raise Problem(413, f"{upload.name!r} is {what}, over the limit of {max_pixels:,} pixels "
                           f"(--max-pixels); expected a photo of ordinary size. Shrink it first.")
    return w * h * frames


def check_images(uploads: list[Upload], max_pixels: int, max_request_pixels: int) -> None:
    """Every header (``check_image``), and the request's total pixels, before decoding: cost follows pixels."""
    total = 0
    for i, upload in enumerate(uploads):
        total += check_image(upload, max_pixels)
        if total > max_request_pixels:
            raise Problem(413, f"The images of this request claim over {max_request_pixels:,} pixels together "
                               f"({total:,} in the first {i + 1} of {len(uploads)}), the limit a request "
                               f"(--max-request-pixels); send fewer or smaller images per request.")


def why_undecodable(upload: Upload, message: str) -> Problem:
    """After the decoder failed (TensorFlow's, or Pillow's without it): a full Pillow decode says why
    (only failed images pay for it)."""
    found = pillow_problem(upload.data)
    if found is not None:
        kind, text = found
        what = "is truncated" if kind == "truncated" else "has corrupt image data"
        return Problem(422, f"{upload.name!r} {what} ({text}); expected a complete image file. "
                            f"Upload it again, or re-save it.")
    line = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    return Problem(422, f"{upload.name!r} could not be decoded ({line[:200]}); expected a JPEG, PNG, BMP "
                        f"or GIF file. Re-save it as JPEG or PNG.")
