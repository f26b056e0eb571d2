"""Write ScanNet ``.sens`` files from the documented byte layout (tests and benchmarks).

Independent of the reader in :mod:`habitat_eqarm.data.scannet`: it packs the header and the
frames with :mod:`struct` as ScanNet's ``SensorData.py`` documents them (version 4,
little-endian), so a reader bug cannot hide behind a shared helper.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

COLOR_CODES = {"raw": 0, "png": 1, "jpeg": 2}
DEPTH_CODES = {"raw_ushort": 0, "zlib_ushort": 1}


def _color_bytes(rgb: np.ndarray, compression: str) -> bytes:
    if compression == "raw":
        return np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG" if compression == "png" else "JPEG", quality=95)
    return buffer.getvalue()


def _depth_bytes(depth: np.ndarray, compression: str) -> bytes:
    data = np.ascontiguousarray(depth, dtype="<u2").tobytes()
    return zlib.compress(data) if compression == "zlib_ushort" else data


def write_sens(
    path: str | os.PathLike[str],
    frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    num_frames: int,
    color_size: tuple[int, int],
    depth_size: tuple[int, int],
    color_compression: str = "jpeg",
    depth_compression: str = "zlib_ushort",
    depth_shift: float = 1000.0,
    sensor_name: str = "StructureSensor",
    intrinsic_color: np.ndarray | None = None,
    intrinsic_depth: np.ndarray | None = None,
) -> Path:
    """Write ``num_frames`` frames ``(rgb (H, W, 3) uint8, depth (h, w) uint16, pose 4x4)``.

    ``color_size`` / ``depth_size`` are ``(width, height)``. Frames are streamed from the
    iterable, so large test files cost little memory.
    """
    path = Path(path)
    k_color = np.eye(4) if intrinsic_color is None else np.asarray(intrinsic_color)
    k_depth = np.eye(4) if intrinsic_depth is None else np.asarray(intrinsic_depth)
    name = sensor_name.encode("utf-8")
    with path.open("wb") as fh:
        fh.write(struct.pack("<IQ", 4, len(name)) + name)
        for matrix in (k_color, np.eye(4), k_depth, np.eye(4)):
            fh.write(struct.pack("<16f", *np.asarray(matrix, np.float32).ravel()))
        fh.write(struct.pack("<ii", COLOR_CODES[color_compression], DEPTH_CODES[depth_compression]))
        fh.write(struct.pack("<4If", *color_size, *depth_size, depth_shift))
        fh.write(struct.pack("<Q", num_frames))
        for i, (rgb, depth, pose) in enumerate(frames):
            color = _color_bytes(rgb, color_compression)
            depth_data = _depth_bytes(depth, depth_compression)
            fh.write(struct.pack("<16f", *np.asarray(pose, np.float32).ravel()))
            fh.write(struct.pack("<4Q", 1000 * i, 1000 * i + 1, len(color), len(depth_data)))
            fh.write(color + depth_data)
    return path


def synthetic_frames(
    n: int, color_size: tuple[int, int], depth_size: tuple[int, int], seed: int = 0
) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``n`` smooth synthetic frames (gradients that move), depth ramps and translating poses."""
    rng = np.random.default_rng(seed)
    (cw, ch), (dw, dh) = color_size, depth_size
    yy, xx = np.mgrid[0:ch, 0:cw]
    dy, dx = np.mgrid[0:dh, 0:dw]
    base = rng.integers(0, 255, 3)
    for i in range(n):
        channels = [(xx + 3 * i + base[0]) % 256, (yy + base[1]) % 256, (xx + yy + i) % 256]
        rgb = np.stack(channels, -1)
        depth = (500 + 10 * dx + 5 * dy + i).astype(np.uint16)
        pose = np.eye(4)
        pose[:3, 3] = [0.1 * i, 0.0, 1.5]
        yield rgb.astype(np.uint8), depth, pose
