"""Pictures of episode memory for people: contact sheets of keyframes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from habitat_eqarm.data.io import atomic_path


def contact_sheet(
    frames: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    columns: int = 5,
    thumb_width: int = 320,
    title: str | None = None,
):
    """Lay frames out in a grid with a caption under each; returns a ``PIL.Image``."""
    from PIL import Image, ImageDraw

    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("contact_sheet needs at least one frame")
    h0, w0 = frames[0].shape[:2]
    tw, th = thumb_width, max(1, round(thumb_width * h0 / w0))
    caption, header, pad = 18, (24 if title else 0), 4
    columns = max(1, min(columns, len(frames)))
    rows = -(-len(frames) // columns)
    sheet = Image.new(
        "RGB",
        (columns * (tw + pad) + pad, header + rows * (th + caption + pad) + pad),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 6), title, fill=(0, 0, 0))
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        x, y = pad + c * (tw + pad), header + pad + r * (th + caption + pad)
        sheet.paste(Image.fromarray(frame).convert("RGB").resize((tw, th)), (x, y))
        if labels is not None:
            draw.text((x + 2, y + th + 3), labels[i], fill=(0, 0, 0))
    return sheet


def save_image(image, path: str | os.PathLike[str]) -> Path:
    """Save a ``PIL.Image`` atomically (format from the suffix); returns the path."""
    with atomic_path(path) as tmp:
        image.save(tmp)
    return Path(path)
