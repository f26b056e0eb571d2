"""ScanNet ``.sens`` files: a streaming reader, and extraction into OpenEQA's folder layout.

The byte layout (version 4, little-endian, as documented by ScanNet's ``SensorData.py``):

* header: ``uint32`` version; ``uint64`` name length and the sensor name (UTF-8); four 4x4
  ``float32`` matrices (colour intrinsics, colour extrinsics, depth intrinsics, depth
  extrinsics); ``int32`` colour compression (0 raw, 1 png, 2 jpeg) and depth compression
  (0 raw ushort, 1 zlib ushort, 2 occi); ``uint32`` colour width, height, depth width, height;
  ``float32`` depth shift (depth units per metre, 1000 for millimetres); ``uint64`` frame count;
* then per frame: a 4x4 ``float32`` camera-to-world pose, ``uint64`` colour and depth
  timestamps, ``uint64`` colour and depth byte sizes, then the colour bytes and the depth bytes.

:class:`SensReader` reads one frame at a time (skipped frames are seeked over, never read), so
memory stays constant whatever the file size. :func:`extract_sens` writes what OpenEQA's
ScanNet episode histories hold: ``{f:06d}-rgb.png``, ``{f:06d}-depth.png`` (uint16, depth
units as stored), ``{f:06d}.txt`` (4x4 pose), with ``f`` the frame's index in the ``.sens``
file, plus ``intrinsic_color.txt``, ``intrinsic_depth.txt``, ``extrinsic_color.txt`` and
``extrinsic_depth.txt``, through the one
:class:`~habitat_eqarm.data.episode_writer.EpisodeFolderWriter` (the folder appears only when
complete; poses and matrices are written exactly).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

if TYPE_CHECKING:
    from habitat_eqarm.data.episode_writer import EpisodeFolderWriter

SENS_VERSION = 4
COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
_MATRIX = struct.Struct("<16f")
_FRAME_HEAD = struct.Struct("<16f4Q")  # pose, colour/depth timestamps, colour/depth sizes
_MAX_NAME = 1 << 16
_MATRICES = ("intrinsic_color", "intrinsic_depth", "extrinsic_color", "extrinsic_depth")


class SensError(ValueError):
    """A ``.sens`` file cannot be read; the message names the file, and the frame if any."""


@dataclass(frozen=True)
class SensHeader:
    """What a ``.sens`` file says about its sensor (matrices are 4x4 float64)."""

    version: int
    sensor_name: str
    intrinsic_color: np.ndarray
    extrinsic_color: np.ndarray
    intrinsic_depth: np.ndarray
    extrinsic_depth: np.ndarray
    color_compression: str
    depth_compression: str
    color_width: int
    color_height: int
    depth_width: int
    depth_height: int
    depth_shift: float
    num_frames: int


@dataclass
class SensFrame:
    """One frame's pose, timestamps and still-compressed colour and depth bytes."""

    index: int
    camera_to_world: np.ndarray
    timestamp_color: int
    timestamp_depth: int
    color_data: bytes
    depth_data: bytes


class SensReader:
    """Read a ``.sens`` file's header at once and its frames lazily, one at a time.

    Use as a context manager or call :meth:`close`. Errors are :class:`SensError` naming the
    file and, past the header, the frame.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._fh: BinaryIO = self.path.open("rb")
        except OSError as err:
            raise SensError(f"{self.path}: cannot open ({err.strerror or err})") from None
        self._size = os.fstat(self._fh.fileno()).st_size
        try:
            self.header = self._read_header()
        except BaseException:
            self._fh.close()
            raise
        self._frames_offset = self._fh.tell()

    def __enter__(self) -> SensReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __len__(self) -> int:
        return self.header.num_frames

    # -- header ---------------------------------------------------------------------------------

    def _read(self, n: int, what: str) -> bytes:
        data = self._fh.read(n)
        if len(data) != n:
            raise SensError(f"{self.path}: truncated {what}: expected {n} bytes, found {len(data)}")
        return data

    def _unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self._read(struct.calcsize(fmt), what))

    def _matrix(self, what: str) -> np.ndarray:
        return np.asarray(_MATRIX.unpack(self._read(_MATRIX.size, what)), np.float64).reshape(4, 4)

    def _read_header(self) -> SensHeader:
        (version,) = self._unpack("<I", "header (version)")
        if version != SENS_VERSION:
            raise SensError(
                f"{self.path}: not a ScanNet .sens file of version {SENS_VERSION} "
                f"(version field is {version})"
            )
        (name_len,) = self._unpack("<Q", "header (sensor name length)")
        if name_len > _MAX_NAME:
            raise SensError(f"{self.path}: implausible sensor name length {name_len}")
        name = self._read(name_len, "header (sensor name)").decode("utf-8", "replace")
        matrices = [
            self._matrix(f"header ({m})")
            for m in ("intrinsic_color", "extrinsic_color", "intrinsic_depth", "extrinsic_depth")
        ]
        color_c, depth_c = self._unpack("<ii", "header (compression types)")
        if color_c not in (0, 1, 2):
            raise SensError(f"{self.path}: unknown colour compression type {color_c}")
        if depth_c not in (0, 1, 2):
            raise SensError(f"{self.path}: unknown depth compression type {depth_c}")
        cw, ch, dw, dh = self._unpack("<4I", "header (image sizes)")
        (depth_shift,) = self._unpack("<f", "header (depth shift)")
        (num_frames,) = self._unpack("<Q", "header (frame count)")
        return SensHeader(
            SENS_VERSION,
            name,
            *matrices,
            COLOR_COMPRESSION[color_c],
            DEPTH_COMPRESSION[depth_c],
            cw,
            ch,
            dw,
            dh,
            float(depth_shift),
            int(num_frames),
        )

    # -- frames ---------------------------------------------------------------------------------

    def frames(self, frame_skip: int = 1, max_frames: int | None = None) -> Iterator[SensFrame]:
        """Frames ``0, frame_skip, 2*frame_skip, ...`` (at most ``max_frames``), read lazily.

        Frames in between are seeked over. A frame cut short by the end of the file raises
        :class:`SensError` naming it.
        """
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be at least 1, got {frame_skip}")
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, got {max_frames}")
        self._fh.seek(self._frames_offset)
        yielded = 0
        for index in range(self.header.num_frames):
            if max_frames is not None and yielded >= max_frames:
                return
            wanted = index % frame_skip == 0
            frame = self._next_frame(index, read_data=wanted)
            if wanted:
                yielded += 1
                yield frame

    def _next_frame(self, index: int, read_data: bool) -> SensFrame | None:
        where = f"frame {index} of {self.header.num_frames}"
        head = self._fh.read(_FRAME_HEAD.size)
        if len(head) != _FRAME_HEAD.size:
            raise SensError(
                f"{self.path}: truncated at {where} (header: expected {_FRAME_HEAD.size} "
                f"bytes, found {len(head)})"
            )
        values = _FRAME_HEAD.unpack(head)
        ts_color, ts_depth, color_size, depth_size = values[16:]
        left = self._size - self._fh.tell()
        if color_size + depth_size > left:
            raise SensError(
                f"{self.path}: truncated at {where}: its colour and depth data need "
                f"{color_size + depth_size} bytes, the file has {left} left"
            )
        if not read_data:
            self._fh.seek(color_size + depth_size, os.SEEK_CUR)
            return None
        return SensFrame(
            index=index,
            camera_to_world=np.asarray(values[:16], np.float64).reshape(4, 4),
            timestamp_color=ts_color,
            timestamp_depth=ts_depth,
            color_data=self._read(color_size, f"{where} (colour)"),
            depth_data=self._read(depth_size, f"{where} (depth)"),
        )

    # -- decoding -------------------------------------------------------------------------------

    def color(self, frame: SensFrame) -> np.ndarray:
        """The frame's colour image, ``(H, W, 3)`` uint8 RGB."""
        h = self.header
        where = f"{self.path}: frame {frame.index} colour"
        if h.color_compression == "raw":
            return _raw(frame.color_data, (h.color_height, h.color_width, 3), np.uint8, where)
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(frame.color_data))
            image.load()
        except (UnidentifiedImageError, OSError) as err:
            raise SensError(f"{where}: cannot decode {h.color_compression} ({err})") from None
        rgb = np.asarray(image.convert("RGB"))
        if rgb.shape[:2] != (h.color_height, h.color_width):
            raise SensError(
                f"{where}: image is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"the header says {h.color_width}x{h.color_height}"
            )
        return rgb

    def depth(self, frame: SensFrame) -> np.ndarray:
        """The frame's depth map, ``(H, W)`` uint16 in units of ``1/depth_shift`` metres."""
        h = self.header
        where = f"{self.path}: frame {frame.index} depth"
        data = frame.depth_data
        if h.depth_compression == "zlib_ushort":
            try:
                data = zlib.decompress(data)
            except zlib.error as err:
                raise SensError(f"{where}: cannot decompress zlib data ({err})") from None
        elif h.depth_compression != "raw_ushort":
            raise SensError(f"{where}: {h.depth_compression} depth is not supported")
        return _raw(data, (h.depth_height, h.depth_width), np.dtype("<u2"), where)


def _raw(data: bytes, shape: tuple[int, ...], dtype, where: str) -> np.ndarray:
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise SensError(f"{where}: {len(data)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.dtype(dtype).newbyteorder("="))


@dataclass
class ExtractStats:
    """What :func:`extract_sens` wrote."""

    out: Path
    frames: int
    total_frames: int
    rgb_only: bool


def extract_sens(
    sens: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    frame_skip: int = 1,
    max_frames: int | None = None,
    rgb_only: bool = False,
    png_compress_level: int = 1,
    workers: int = 2,
    on_frame: Callable[[int], None] | None = None,
) -> ExtractStats:
    """Extract a ``.sens`` file into an OpenEQA episode folder ``out`` (see module doc).

    Frames ``0, frame_skip, ...`` are kept, at most ``max_frames`` of them (OpenEQA kept 600).
    PNG encoding runs on ``workers`` threads with a bounded queue, so memory stays constant.
    ``on_frame(n)`` is called after each frame is queued (progress bars). An existing ``out``
    is an error; on any error nothing is left behind.
    """
    from habitat_eqarm.data.episode_writer import EpisodeFolderWriter

    writer = EpisodeFolderWriter(out, compress_level=png_compress_level)
    try:
        with SensReader(sens) as reader:
            selection = (frame_skip, max_frames)
            count = _write_frames(reader, writer, selection, rgb_only, workers, on_frame)
            if not rgb_only:
                for name in _MATRICES:
                    writer.write_matrix(name, getattr(reader.header, name))
            writer.commit()
            return ExtractStats(writer.folder, count, reader.header.num_frames, rgb_only)
    except BaseException:
        writer.abort()
        raise


def _write_frames(
    reader: SensReader,
    writer: EpisodeFolderWriter,
    selection: tuple[int, int | None],
    rgb_only: bool,
    workers: int,
    on_frame: Callable[[int], None] | None,
) -> int:
    pending: deque[Future] = deque()
    count = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for frame in reader.frames(*selection):
            rgb = reader.color(frame)
            depth = None if rgb_only else reader.depth(frame)
            pose = None if rgb_only else frame.camera_to_world
            pending.append(pool.submit(writer.write_frame, frame.index, rgb, depth, pose))
            while len(pending) > 2 * max(1, workers):  # bound what waits in memory
                pending.popleft().result()
            count += 1
            if on_frame is not None:
                on_frame(count)
        while pending:
            pending.popleft().result()
    return count
