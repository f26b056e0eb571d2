"""`EpisodeFolderWriter`: the one writer of OpenEQA's episode-folder layout, atomic.

Files: ``{i:06d}-rgb.png`` (RGB, uint8), ``{i:06d}-depth.png`` (uint16 depth units, e.g.
millimetres), ``{i:06d}.txt`` (4x4 camera pose) and ``<name>.txt`` matrices
(``intrinsic_color``, ``extrinsic_depth``...), floats written exactly (numpy's ``%.18e``).
Everything goes into a hidden temporary sibling folder that :meth:`EpisodeFolderWriter.commit`
renames onto the target, so a reader never sees half an episode; :meth:`abort` (or an error
inside a ``with`` block) removes it. :func:`~habitat_eqarm.data.episode.write_episode_folder`,
the :class:`~habitat_eqarm.data.recorder.EpisodeMemoryRecorder` and the ScanNet extractor all
write through it, so the same episode gives the same bytes whichever wrote it.

:meth:`write_frame` may be called from several threads for different frames.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: PNG zlib level: 1 writes several times faster than PIL's default 6, files ~10 % larger.
PNG_COMPRESS_LEVEL = 1


def checked_rgb(rgb: Any, where: str) -> np.ndarray:
    """``rgb`` as ``(H, W, 3)`` uint8; a ValueError naming ``where`` otherwise."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{where}: a frame must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return arr


def checked_depth(depth: Any, where: str) -> np.ndarray:
    """``depth`` as ``(H, W)`` uint16 without changing a value; a ValueError naming ``where``.

    Float depth (metres) or integers outside 0..65535 would be truncated or wrapped by a cast:
    convert to integer depth units first.
    """
    arr = np.asarray(depth)
    if arr.ndim != 2:
        raise ValueError(f"{where}: depth must be (H, W), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{where}: depth must be integer depth units (uint16, e.g. millimetres), "
            f"got {arr.dtype}; scale and convert it first"
        )
    if arr.dtype != np.uint16:
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(
                f"{where}: depth values {arr.min()}..{arr.max()} lie outside 0..65535 (uint16)"
            )
        arr = arr.astype(np.uint16)
    return arr


def checked_pose(pose: Any, where: str) -> np.ndarray:
    """``pose`` as a 4x4 float64 matrix (a copy); a ValueError naming ``where`` otherwise."""
    arr = np.array(pose, dtype=np.float64)
    if arr.size != 16:
        raise ValueError(f"{where}: a pose must be 4x4, got shape {arr.shape}")
    return arr.reshape(4, 4)


class EpisodeFolderWriter:
    """Write one episode folder atomically (see module doc); use :meth:`commit` or ``with``.

    An existing ``folder`` is a :class:`FileExistsError`. ``compress_level``: PNG zlib level
    0-9.
    """

    def __init__(
        self, folder: str | os.PathLike[str], *, compress_level: int = PNG_COMPRESS_LEVEL
    ) -> None:
        self.folder = Path(folder)
        if self.folder.exists():
            raise FileExistsError(f"{self.folder}: episode already exists")
        if not 0 <= compress_level <= 9:
            raise ValueError(f"compress_level must be 0..9, got {compress_level}")
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.compress_level = compress_level
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", dir=self.folder.parent))

    def __enter__(self) -> EpisodeFolderWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def write_frame(self, index: int, rgb: Any, depth: Any = None, pose: Any = None) -> None:
        """Frame ``index``: its RGB image and, when given, depth map and camera pose."""
        from PIL import Image

        where = f"{self.folder}: frame {index}"
        rgb = checked_rgb(rgb, where)
        depth = None if depth is None else checked_depth(depth, where)
        pose = None if pose is None else checked_pose(pose, where)
        stem = self.tmp / f"{index:06d}"
        Image.fromarray(rgb).save(f"{stem}-rgb.png", compress_level=self.compress_level)
        if depth is not None:
            Image.fromarray(depth).save(f"{stem}-depth.png", compress_level=self.compress_level)
        if pose is not None:
            np.savetxt(f"{stem}.txt", pose)

    def write_matrix(self, name: str, matrix: Any) -> None:
        """``<name>.txt``: a camera matrix, e.g. ``intrinsic_color`` (3x3 or 4x4)."""
        np.savetxt(self.tmp / f"{name}.txt", np.asarray(matrix, dtype=np.float64))

    def write_intrinsics(self, intrinsics: dict[str, Any] | None) -> None:
        """``intrinsic_<name>.txt`` for each entry (``{"color": K, "depth": K}``)."""
        for name, matrix in (intrinsics or {}).items():
            self.write_matrix(f"intrinsic_{name}", matrix)

    def commit(self) -> Path:
        """Move the finished episode into place; returns its folder."""
        os.replace(self.tmp, self.folder)
        return self.folder

    def abort(self) -> None:
        """Remove everything written so far (the target never appears)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
