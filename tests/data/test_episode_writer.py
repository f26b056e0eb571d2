"""One OpenEQA episode-folder writer for write_episode_folder, the recorder and the ScanNet
extractor: the same episode gives the same bytes, bad input is named, nothing is half written."""

from __future__ import annotations

import numpy as np
import pytest

from habitat_eqarm.data.episode import EpisodeMemory, write_episode_folder
from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.data.scannet import extract_sens
from habitat_eqarm.testing.sens import synthetic_frames, write_sens


def episode(n=4, h=12, w=16):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    depth = rng.integers(0, 65536, (n, h, w), dtype=np.uint16)
    poses = np.repeat(np.eye(4)[None], n, axis=0)
    poses[:, :3, 3] = rng.normal(size=(n, 3))  # full float64 precision
    return frames, depth, poses, {"color": np.diag([10.5, 10.5, 1.0])}


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_recorder_and_write_episode_folder_write_the_same_bytes(tmp_path):
    frames, depth, poses, intrinsics = episode()
    write_episode_folder(tmp_path / "a" / "ep", frames, depth=depth, poses=poses,
                         intrinsics=intrinsics)  # fmt: skip
    recorder = EpisodeMemoryRecorder(out_dir=tmp_path / "b")
    recorder.start("ep", intrinsics=intrinsics)
    for f, d, p in zip(frames, depth, poses, strict=True):
        recorder.add(f, depth=d, pose=p)
    recorder.finish()
    assert folder_bytes(tmp_path / "a" / "ep") == folder_bytes(tmp_path / "b" / "ep")
    memory = EpisodeMemory.from_path(tmp_path / "b" / "ep")
    np.testing.assert_array_equal(memory.poses(list(range(4))), poses)  # lossless
    np.testing.assert_array_equal(memory.depth(list(range(4))), depth)


def test_scannet_extraction_writes_poses_exactly(tmp_path):
    size = (16, 12)
    frames = list(synthetic_frames(3, size, size))
    write_sens(tmp_path / "s.sens", iter(frames), num_frames=3, color_size=size,
               depth_size=size, color_compression="raw")  # fmt: skip
    extract_sens(tmp_path / "s.sens", tmp_path / "ep")
    memory = EpisodeMemory.from_path(tmp_path / "ep")
    expected = np.stack([pose.astype(np.float32).astype(np.float64) for _, _, pose in frames])
    np.testing.assert_array_equal(memory.poses([0, 1, 2]), expected)


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (np.full((4, 12, 16), 1.5, np.float32), r"frame 0: depth must be integer .*float32"),
        (np.full((4, 12, 16), 70_000, np.int64), r"frame 0: depth .* outside 0\.\.65535"),
    ],
)
def test_depth_that_would_be_mangled_is_refused_naming_the_frame(tmp_path, depth, message):
    frames, *_ = episode()
    with pytest.raises(ValueError, match=message):
        write_episode_folder(tmp_path / "ep", frames, depth=depth)
    assert list(tmp_path.iterdir()) == []  # nothing half written


def test_a_bad_pose_is_named_and_leaves_nothing(tmp_path):
    frames, *_ = episode(n=2)
    with pytest.raises(ValueError, match=r"ep: frame 1: a pose must be 4x4, got shape \(3,\)"):
        write_episode_folder(tmp_path / "ep", frames, poses=[np.eye(4), np.ones(3)])
    assert list(tmp_path.iterdir()) == []
