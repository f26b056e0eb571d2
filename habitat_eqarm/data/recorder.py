"""`EpisodeMemoryRecorder`: collect an episode's frames (and depth, poses) as it is played.

Memory stays bounded, whatever the episode length: at most ``max_frames`` frames are kept, by
stride doubling. Every frame is kept until the buffer is full; then every other kept frame is
dropped and from then on only every 2nd step is kept, then every 4th, and so on. The kept
frames are always evenly spaced over the whole episode so far (``step_indices`` says which),
so a 10,000-step episode costs what a ``max_frames``-step one does.

With ``out_dir`` every frame (not only the kept ones) is also written to disk by a writer
thread: the step loop only copies the frame into a queue. ``write_format="folder"`` writes
OpenEQA's layout (lossless PNG, plus depth and poses when given) through the one
:class:`~habitat_eqarm.data.episode_writer.EpisodeFolderWriter`; ``"mp4"`` writes RGB only,
H.264 in its lossless RGB mode (libx264rgb, qp 0, via PyAV). :class:`EpisodeMemory` reads
either back identically. The episode is written to a hidden temporary name and renamed into
place by :meth:`finish`, so a reader never sees half an episode.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.episode_writer import PNG_COMPRESS_LEVEL, EpisodeFolderWriter

_STOP = object()


class _VideoSink:
    """RGB frames encoded losslessly into a temporary ``.mp4`` (libx264rgb, qp 0), renamed
    onto ``target`` by :meth:`commit`; the video counterpart of :class:`EpisodeFolderWriter`."""

    def __init__(self, target: Path, fps: float) -> None:
        if target.exists():
            raise FileExistsError(f"{target}: episode already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target, self.fps = target, fps
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".mp4", dir=target.parent)
        os.close(fd)
        self.tmp = Path(name)
        self.container = self.stream = None

    def write_frame(self, index: int, rgb: np.ndarray, depth=None, pose=None) -> None:
        import av

        if self.stream is None:
            self.container = av.open(str(self.tmp), "w")
            options = {"qp": "0", "preset": "ultrafast"}
            self.stream = self.container.add_stream(
                "libx264rgb", rate=round(self.fps), options=options
            )
            self.stream.height, self.stream.width = rgb.shape[:2]
            self.stream.pix_fmt = "rgb24"
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self.container.mux(packet)

    def write_intrinsics(self, intrinsics: dict[str, np.ndarray] | None) -> None:
        """A video holds RGB only."""

    def commit(self) -> Path:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = self.stream = None
        os.replace(self.tmp, self.target)
        return self.target

    def abort(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):  # a broken stream: the file goes anyway
                self.container.close()
            self.container = self.stream = None
        self.tmp.unlink(missing_ok=True)


class _BackgroundWriter:
    """A thread handing queued frames to a sink (:class:`EpisodeFolderWriter` or an mp4)."""

    def __init__(self, sink: EpisodeFolderWriter | _VideoSink, name: str, max_pending: int):
        self.sink, self.name = sink, name
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"recorder-{name}", daemon=True)
        self.thread.start()

    def put(self, index: int, frame: np.ndarray, depth, pose) -> None:
        if self.error is not None:
            raise RuntimeError(f"{self.name}: writing the episode failed: {self.error}")
        self.queue.put((index, frame, depth, pose))

    def _run(self) -> None:
        while (item := self.queue.get()) is not _STOP:
            if self.error is not None:
                continue  # drain after a failure
            try:
                self.sink.write_frame(*item)
            except BaseException as err:  # reported to the step loop on its next call
                self.error = err

    def finish(self, intrinsics: dict[str, np.ndarray] | None) -> Path:
        self.queue.put(_STOP)
        self.thread.join()
        if self.error is None:
            try:
                self.sink.write_intrinsics(intrinsics)
                return self.sink.commit()
            except BaseException as err:
                self.error = err
        self.sink.abort()
        raise RuntimeError(f"{self.name}: writing the episode failed: {self.error}")

    def abort(self) -> None:
        if self.thread.is_alive():
            self.queue.put(_STOP)
            self.thread.join()
        self.sink.abort()


class EpisodeMemoryRecorder:
    """Record frames during an episode; see the module doc for the memory policy and writing.

    ``out_dir``: write each episode to ``out_dir/<name>`` (a folder) or ``out_dir/<name>.mp4``
    (``write_format="mp4"``), ``name`` given to :meth:`start`; ``fps`` is the video's rate.
    ``png_compress_level``: 0-9, trading file size for writer speed (1 is fast).
    ``max_pending``: frames queued for the writer before :meth:`add` waits for it.
    """

    def __init__(
        self,
        max_frames: int = 256,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        write_format: str = "folder",
        fps: float = 10.0,
        png_compress_level: int = PNG_COMPRESS_LEVEL,
        max_pending: int = 256,
    ) -> None:
        if max_frames < 2:
            raise ValueError(f"max_frames must be at least 2, got {max_frames}")
        if write_format not in ("folder", "mp4"):
            raise ValueError(f"write_format must be 'folder' or 'mp4', got {write_format!r}")
        self.write_format, self.fps = write_format, fps
        self.max_frames = max_frames
        self.out_dir = Path(out_dir) if out_dir else None
        self.png_compress_level = png_compress_level
        self.max_pending = max_pending
        self._writer: _BackgroundWriter | None = None
        self.intrinsics: dict[str, np.ndarray] | None = None
        self.clear()

    def clear(self) -> None:
        """Forget the current episode (an unfinished disk episode is discarded)."""
        if getattr(self, "_writer", None) is not None:
            self._writer.abort()
            self._writer = None
        self.frames: list[np.ndarray] = []
        self.depth: list[np.ndarray] = []
        self.poses: list[np.ndarray] = []
        self.step_indices: list[int] = []
        self.stride = 1
        self.steps = 0

    def start(
        self, name: str | None = None, intrinsics: dict[str, np.ndarray] | None = None
    ) -> None:
        """Begin a new episode (clears the old one); with ``out_dir``, ``name`` is its folder."""
        self.clear()
        self.intrinsics = intrinsics
        if self.out_dir is not None:
            if not name:
                raise ValueError("EpisodeMemoryRecorder.start: a name is needed to write to disk")
            if self.write_format == "mp4":
                target = self.out_dir / f"{name}.mp4"
                sink = _VideoSink(target, self.fps)
            else:
                target = self.out_dir / name
                sink = EpisodeFolderWriter(target, compress_level=self.png_compress_level)
            self._writer = _BackgroundWriter(sink, str(target), self.max_pending)

    def add(self, frame: np.ndarray, depth: np.ndarray | None = None, pose: Any = None) -> None:
        """Record one step's frame ``(H, W, 3)`` uint8, with optional depth and 4x4 pose."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"recorder: a frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}"
            )
        # np.array copies (asarray would alias a float64 pose buffer the caller reuses)
        pose_arr = None if pose is None else np.array(pose, dtype=np.float64).reshape(4, 4)
        depth_arr = None if depth is None else np.asarray(depth)
        index = self.steps
        self.steps += 1
        kept = index % self.stride == 0
        if self._writer is None and not kept:
            return
        # One copy (the caller may reuse its buffer), shared by the writer and the buffer:
        # neither modifies it.
        frame = frame.copy()
        depth_arr = None if depth_arr is None else depth_arr.copy()
        if self._writer is not None:
            self._writer.put(index, frame, depth_arr, pose_arr)
        if not kept:
            return
        self.frames.append(frame)
        self.step_indices.append(index)
        if depth_arr is not None:
            self.depth.append(depth_arr)
        if pose_arr is not None:
            self.poses.append(pose_arr)
        if len(self.frames) > self.max_frames:
            self._decimate()

    def _decimate(self) -> None:
        self.stride *= 2
        keep = [i for i, step in enumerate(self.step_indices) if step % self.stride == 0]
        self.frames = [self.frames[i] for i in keep]
        self.step_indices = [self.step_indices[i] for i in keep]
        if self.depth:
            self.depth = [self.depth[i] for i in keep]
        if self.poses:
            self.poses = [self.poses[i] for i in keep]

    def __len__(self) -> int:
        return len(self.frames)

    def memory(self, fps: float | None = None) -> EpisodeMemory:
        """The kept frames as an :class:`EpisodeMemory` (indices are positions in the buffer)."""
        if not self.frames:
            raise ValueError("recorder: no frame was recorded in this episode")
        full = len(self.depth) == len(self.frames)
        return EpisodeMemory.from_frames(
            np.stack(self.frames),
            fps=fps,
            depth=np.stack(self.depth) if full and self.depth else None,
            poses=np.stack(self.poses) if len(self.poses) == len(self.frames) else None,
            intrinsics=self.intrinsics,
        )

    def finish(self) -> Path | None:
        """End the episode: with ``out_dir``, wait for the writer and move the folder into place."""
        if self._writer is None:
            return None
        writer, self._writer = self._writer, None
        return writer.finish(self.intrinsics)

    def close(self) -> None:
        """Discard an unfinished disk episode and stop the writer."""
        self.clear()
