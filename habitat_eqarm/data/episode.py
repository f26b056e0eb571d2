"""`EpisodeMemory`: an agent's episode history (RGB, optional depth and poses) read lazily.

Three kinds of memory share one interface:

* an OpenEQA episode-history folder: ``<index>-rgb.png`` per frame (sorted by the integer
  index), optional ``<index>-depth.png`` (uint16) and ``<index>.txt`` (4x4 camera pose), plus
  ``intrinsic_color.txt`` / ``intrinsic_depth.txt`` once per folder;
* a video file, read with decord;
* frames already in memory (``(N, H, W, 3)`` uint8), e.g. recorded by a gym wrapper.

Opening a memory decodes no pixels: a folder is listed, a video's container header is read.
:meth:`EpisodeMemory.frames` decodes only the frames asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_FRAME_RE = re.compile(r"^(\d+)-rgb\.png$")

#: Depth units per metre in OpenEQA's folders: HM3D stores metres/10*65535, ScanNet millimetres.
DEPTH_UNITS_PER_METRE = {"hm3d": 65535.0 / 10.0, "scannet": 1000.0}


class EpisodeMemoryError(ValueError):
    """An episode memory cannot be read; the message names the file and the problem."""


class EpisodeMemory:
    """A sequence of RGB frames (with optional depth and poses) from one episode.

    Build one with :meth:`from_path`, :meth:`from_folder`, :meth:`from_video` or
    :meth:`from_frames`. Indices are 0-based frame positions in the memory.
    """

    def __init__(
        self,
        *,
        kind: str,
        length: int,
        path: Path | None = None,
        fps: float | None = None,
        rgb_files: list[Path] | None = None,
        array: np.ndarray | None = None,
        depth: np.ndarray | None = None,
        poses: np.ndarray | None = None,
        intrinsics: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.kind = kind
        self.path = path
        self.fps = fps
        self.intrinsics = intrinsics or {}
        self._length = length
        self._rgb_files = rgb_files
        self._array = array
        self._depth = depth
        self._poses = poses
        self._reader: Any = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> EpisodeMemory:
        """Open a folder in OpenEQA's layout or a video file, whichever ``path`` is."""
        path = Path(path)
        if path.is_dir():
            return cls.from_folder(path)
        if path.is_file():
            return cls.from_video(path)
        raise EpisodeMemoryError(f"{path}: no such episode folder or video file")

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> EpisodeMemory:
        """Open an OpenEQA episode-history folder (lists files, decodes nothing)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise EpisodeMemoryError(f"{folder}: not a folder")
        indexed = []
        for entry in folder.iterdir():
            match = _FRAME_RE.match(entry.name)
            if match:
                indexed.append((int(match.group(1)), entry))
        if not indexed:
            raise EpisodeMemoryError(
                f"{folder}: empty episode folder (no '<index>-rgb.png' frames)"
            )
        indexed.sort()
        files = [p for _, p in indexed]
        return cls(
            kind="folder",
            length=len(files),
            path=folder,
            rgb_files=files,
            intrinsics=_read_intrinsics(folder),
        )

    @classmethod
    def from_video(cls, video: str | os.PathLike[str]) -> EpisodeMemory:
        """Open a video file with decord (reads the container header, decodes no frame)."""
        video = Path(video)
        memory = cls(kind="video", length=0, path=video)
        reader = memory._video_reader()
        memory._length = len(reader)
        if memory._length == 0:
            raise EpisodeMemoryError(f"{video}: the video has no frames")
        fps = float(reader.get_avg_fps())
        memory.fps = fps if fps > 0 else None
        return memory

    @classmethod
    def from_frames(
        cls,
        frames: np.ndarray | Sequence[np.ndarray],
        *,
        fps: float | None = None,
        depth: np.ndarray | Sequence[np.ndarray] | None = None,
        poses: np.ndarray | Sequence[np.ndarray] | None = None,
        intrinsics: dict[str, np.ndarray] | None = None,
    ) -> EpisodeMemory:
        """Wrap frames already in memory: ``(N, H, W, 3)`` uint8 (a list of frames also works)."""
        array = np.asarray(frames)
        if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
            raise EpisodeMemoryError(
                f"in-memory frames must have shape (N>0, H, W, 3), got {array.shape}"
            )
        if array.dtype != np.uint8:
            raise EpisodeMemoryError(f"in-memory frames must be uint8, got {array.dtype}")
        depth_arr = None if depth is None else np.asarray(depth)
        pose_arr = None if poses is None else np.asarray(poses, dtype=np.float64)
        for name, extra in (("depth", depth_arr), ("poses", pose_arr)):
            if extra is not None and len(extra) != len(array):
                raise EpisodeMemoryError(f"{name} has {len(extra)} entries for {len(array)} frames")
        return cls(
            kind="array",
            length=len(array),
            fps=fps,
            array=array,
            depth=depth_arr,
            poses=pose_arr,
            intrinsics=intrinsics,
        )

    # -- access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"EpisodeMemory(kind={self.kind!r}, frames={len(self)}{where})"

    def __getstate__(self) -> dict[str, Any]:
        # A decord reader cannot be pickled (vector envs, dataloader workers); reopen lazily.
        state = self.__dict__.copy()
        state["_reader"] = None
        return state

    @property
    def has_depth(self) -> bool:
        """Whether depth maps are available for this memory."""
        if self._depth is not None:
            return True
        return bool(self._rgb_files) and _depth_file(self._rgb_files[0]).is_file()

    @property
    def has_poses(self) -> bool:
        """Whether camera poses are available for this memory."""
        if self._poses is not None:
            return True
        return bool(self._rgb_files) and _pose_file(self._rgb_files[0]).is_file()

    def frames(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Decode the frames at ``indices`` (all if None) as ``(k, H, W, 3)`` uint8 RGB."""
        idx = self._check_indices(indices)
        if self.kind == "array":
            return self._array[idx]
        if self.kind == "folder":
            return np.stack([_read_png(self._rgb_files[i], mode="RGB") for i in idx])
        return self._decode_video(idx)

    def frame(self, index: int) -> np.ndarray:
        """Decode one frame as ``(H, W, 3)`` uint8 RGB."""
        return self.frames([index])[0]

    def depth(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Depth maps at ``indices`` as stored (OpenEQA: uint16; see DEPTH_UNITS_PER_METRE)."""
        idx = self._check_indices(indices)
        if self._depth is not None:
            return self._depth[idx]
        if not self.has_depth:
            raise EpisodeMemoryError(f"{self._name()}: no depth maps in this episode memory")
        return np.stack([_read_png(_depth_file(self._rgb_files[i]), mode=None) for i in idx])

    def poses(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Camera poses at ``indices`` as ``(k, 4, 4)`` float64 matrices."""
        idx = self._check_indices(indices)
        if self._poses is not None:
            return self._poses[idx]
        if not self.has_poses:
            raise EpisodeMemoryError(f"{self._name()}: no camera poses in this episode memory")
        return np.stack([_read_matrix(_pose_file(self._rgb_files[i]), (4, 4)) for i in idx])

    def keyframes(self, n: int = 5, method: str = "uniform", **kwargs: Any) -> list[int]:
        """Pick ``n`` keyframe indices; see ``habitat_eqarm.data.keyframes``."""
        from habitat_eqarm.data.keyframes import select_keyframes

        return select_keyframes(self, n=n, method=method, **kwargs)

    def thumbnails(self, indices: Sequence[int], size: tuple[int, int] = (32, 18)) -> np.ndarray:
        """Downscaled frames ``(k, h, w, 3)`` uint8 at ``size=(w, h)``, decoded cheaply.

        Videos are scaled by the decoder itself; folders and arrays are resized with PIL.
        """
        idx = self._check_indices(indices)
        if self.kind == "video":
            from decord import VideoReader, cpu

            reader = VideoReader(str(self.path), ctx=cpu(0), width=size[0], height=size[1])
            return self._decode_with(reader, idx)
        from PIL import Image

        out = np.empty((len(idx), size[1], size[0], 3), dtype=np.uint8)
        for j, i in enumerate(idx):
            if self.kind == "folder":
                image = _open_png(self._rgb_files[i])
                image.draft("RGB", size)
                image = image.convert("RGB")
            else:
                image = Image.fromarray(self._array[i])
            out[j] = np.asarray(image.resize(size, Image.BILINEAR))
        return out

    # -- internals ----------------------------------------------------------------------------

    def _name(self) -> str:
        return str(self.path) if self.path else "in-memory episode"

    def _check_indices(self, indices: Sequence[int] | None) -> list[int]:
        if indices is None:
            return list(range(len(self)))
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < len(self)]
        if bad:
            raise IndexError(
                f"{self._name()}: frame index {bad[0]} out of range for {len(self)} frames"
            )
        return idx

    def _video_reader(self) -> Any:
        if self._reader is None:
            from decord import DECORDError, VideoReader, cpu

            if not self.path.is_file():
                raise EpisodeMemoryError(f"{self.path}: video file not found")
            try:
                self._reader = VideoReader(str(self.path), ctx=cpu(0), num_threads=1)
            except (DECORDError, RuntimeError) as err:
                raise EpisodeMemoryError(
                    f"{self.path}: cannot open video ({_first_line(err)})"
                ) from None
        return self._reader

    def _decode_video(self, idx: list[int]) -> np.ndarray:
        return self._decode_with(self._video_reader(), idx)

    def _decode_with(self, reader: Any, idx: list[int]) -> np.ndarray:
        from decord import DECORDError

        try:
            return reader.get_batch(idx).asnumpy()
        except (DECORDError, RuntimeError) as err:
            raise EpisodeMemoryError(
                f"{self.path}: failed to decode frames {idx[:5]}... ({_first_line(err)})"
            ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _depth_file(rgb_file: Path) -> Path:
    return rgb_file.with_name(rgb_file.name.replace("-rgb.png", "-depth.png"))


def _pose_file(rgb_file: Path) -> Path:
    return rgb_file.with_name(rgb_file.name.replace("-rgb.png", ".txt"))


def _open_png(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except FileNotFoundError:
        raise EpisodeMemoryError(f"{path}: frame file not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise EpisodeMemoryError(f"{path}: cannot decode frame ({_first_line(err)})") from None


def _read_png(path: Path, mode: str | None) -> np.ndarray:
    image = _open_png(path)
    try:
        if mode is not None:
            image = image.convert(mode)
        image.load()
        return np.asarray(image)
    except OSError as err:  # truncated or corrupt pixel data only shows up at decode time
        raise EpisodeMemoryError(f"{path}: cannot decode frame ({_first_line(err)})") from None


def _read_matrix(path: Path, shape: tuple[int, int], allow_3x3: bool = False) -> np.ndarray:
    try:
        values = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise EpisodeMemoryError(f"{path}: cannot read matrix ({_first_line(err)})") from None
    if allow_3x3 and values.size == 9:  # intrinsics may be stored as 3x3
        return values.reshape(3, 3)
    if values.size != shape[0] * shape[1]:
        raise EpisodeMemoryError(
            f"{path}: expected a {shape[0]}x{shape[1]} matrix, got {values.size} numbers"
        )
    return values.reshape(shape)


def _read_intrinsics(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for name in ("intrinsic_color", "intrinsic_depth"):
        path = folder / f"{name}.txt"
        if path.is_file():
            out[name.removeprefix("intrinsic_")] = _read_matrix(path, (4, 4), allow_3x3=True)
    return out


def write_episode_folder(
    folder: str | os.PathLike[str],
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    depth: np.ndarray | Sequence[np.ndarray] | None = None,
    poses: np.ndarray | Sequence[np.ndarray] | None = None,
    intrinsics: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write an episode in OpenEQA's folder layout, atomically; returns ``folder``.

    Through :class:`~habitat_eqarm.data.episode_writer.EpisodeFolderWriter` (files, checks
    and atomicity are described there): depth must be integer units (uint16), poses 4x4; an
    existing ``folder`` is an error, and on any error nothing is left behind.
    """
    from habitat_eqarm.data.episode_writer import EpisodeFolderWriter

    with EpisodeFolderWriter(folder) as writer:
        for i, frame in enumerate(frames):
            writer.write_frame(
                i,
                frame,
                None if depth is None else depth[i],
                None if poses is None else poses[i],
            )
        writer.write_intrinsics(intrinsics)
    return writer.folder
