"""Requests in the OpenAI chat format: frames as base64 data-URL images, both directions.

Our prompts (:func:`~habitat_eqarm.rewards.prompts.build_messages`) carry bare ``{"type":
"image"}`` / ``{"type": "video"}`` placeholders and pass the frames separately. The OpenAI chat
format puts each image in the message itself as ``{"type": "image_url", "image_url": {"url":
"data:image/...;base64,..."}}``. :func:`to_openai_messages` fills the placeholders in order (a
video placeholder becomes its frames as consecutive images: the chat API has no video type);
:func:`from_openai_messages` turns such messages back into a :class:`GenerationRequest`.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from habitat_eqarm.rewards.backends.base import GenerationRequest

IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
#: What a server decodes: common still-image types only.
ACCEPTED_MIME_TYPES = ("image/png", "image/jpeg", "image/webp")


def encode_frame(
    frame: np.ndarray, image_format: str = "jpeg", quality: int = 90, max_pixels: int | None = None
) -> str:
    """One ``(H, W, 3)`` uint8 frame as a data URL; shrunk to at most ``max_pixels`` pixels."""
    from PIL import Image

    if image_format not in IMAGE_FORMATS:
        raise ValueError(
            f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}"
        )
    image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    w, h = image.size
    if max_pixels and w * h > max_pixels:
        scale = math.sqrt(max_pixels / (w * h))
        image = image.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    options = {"quality": int(quality)} if image_format == "jpeg" else {}
    image.save(buf, format=IMAGE_FORMATS[image_format], **options)
    return f"data:image/{image_format};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def decode_image_url(url: str, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 array from a base64 data URL; anything else raises ValueError.

    Only data URLs are read: a server that fetched ``http://`` or ``file://`` URLs on a client's
    behalf would let any client make it read local files or reach internal hosts.
    ``max_pixels`` refuses images whose header announces more pixels, before decoding them.
    """
    from PIL import Image, UnidentifiedImageError

    head, sep, data = url.partition(",")
    if not (url.startswith("data:") and sep and head.endswith(";base64")):
        shown = url[:40] + ("..." if len(url) > 40 else "")
        raise ValueError(
            f"image URL must be a base64 data URL (data:image/...;base64,...), got {shown!r}"
        )
    mime = head[len("data:") : -len(";base64")]
    if mime not in ACCEPTED_MIME_TYPES:
        raise ValueError(
            f"image type {mime!r} not accepted (accepted: {', '.join(ACCEPTED_MIME_TYPES)})"
        )
    try:
        raw = base64.b64decode(data, validate=True)
        image = Image.open(io.BytesIO(raw))
    except (binascii.Error, UnidentifiedImageError) as err:
        raise ValueError(f"image data is not a valid base64-encoded {mime} ({err})") from None
    w, h = image.size
    if w * h > max_pixels:
        raise ValueError(f"image of {w}x{h} pixels exceeds the limit of {max_pixels} pixels")
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OSError as err:  # truncated or corrupt pixel data
        raise ValueError(f"image data could not be decoded ({err})") from None


def media_counts(messages: list[dict[str, Any]]) -> tuple[int, int]:
    """How many image and video placeholders the messages hold."""
    images = videos = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            images += sum(part.get("type") == "image" for part in content)
            videos += sum(part.get("type") == "video" for part in content)
    return images, videos


def check_placeholders(request: GenerationRequest) -> None:
    """Raise ValueError unless the placeholders match the frames (one per image, or one video)."""
    images, videos = media_counts(request.messages)
    n = len(request.frames)
    if request.as_video:
        if images or videos != 1:
            raise ValueError(f"a video request needs exactly one video placeholder, got {videos}")
    elif videos or images != n:
        raise ValueError(f"{images} image placeholder(s) and {videos} video(s) for {n} frame(s)")


def to_openai_messages(
    request: GenerationRequest, encode: Callable[[np.ndarray], str] = encode_frame
) -> list[dict[str, Any]]:
    """The request's messages with each placeholder replaced by data-URL image parts, in order."""
    check_placeholders(request)
    frames = iter(request.frames)
    out = []
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, list):
            parts: list[dict[str, Any]] = []
            for part in content:
                kind = part.get("type")
                if kind == "image":
                    parts.append(_image_part(encode(next(frames))))
                elif kind == "video":
                    parts += [_image_part(encode(f)) for f in frames]
                else:
                    parts.append({"type": "text", "text": part.get("text", "")})
            content = parts
        out.append({"role": message["role"], "content": content})
    return out


def _image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def from_openai_messages(
    messages: list[dict[str, Any]], decode: Callable[[str], np.ndarray] = decode_image_url
) -> GenerationRequest:
    """A :class:`GenerationRequest` from OpenAI chat messages (images become placeholders).

    All images of one request must have the same size, since frames travel as one array.
    """
    frames: list[np.ndarray] = []
    converted = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image_url":
                    frames.append(decode((part.get("image_url") or {}).get("url", "")))
                    parts.append({"type": "image"})
                else:
                    parts.append({"type": "text", "text": part.get("text") or ""})
            content = parts
        converted.append({"role": message["role"], "content": content})
    for i, frame in enumerate(frames[1:], start=2):
        if frame.shape != frames[0].shape:
            raise ValueError(
                f"image {i} is {frame.shape[1]}x{frame.shape[0]} but image 1 is "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}: all images of a request must "
                "have one size"
            )
    stacked = np.stack(frames) if frames else np.zeros((0, 1, 1, 3), dtype=np.uint8)
    return GenerationRequest(messages=converted, frames=stacked)
