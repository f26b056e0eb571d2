import numpy as np
import pytest

from habitat_eqarm.data import EpisodeMemory, EpisodeMemoryRecorder


def frame(value, h=8, w=8):
    return np.full((h, w, 3), value % 256, dtype=np.uint8)


def test_a_10000_step_episode_keeps_a_bounded_evenly_spaced_memory():
    recorder = EpisodeMemoryRecorder(max_frames=64)
    recorder.start()
    for t in range(10_000):
        recorder.add(frame(t))
    assert 32 <= len(recorder) <= 64
    steps = recorder.step_indices
    assert steps[0] == 0 and len(set(np.diff(steps))) == 1  # evenly spaced
    assert steps[-1] >= 10_000 - recorder.stride  # reaches the end of the episode
    memory = recorder.memory()
    assert len(memory) == len(recorder)
    assert memory.frame(3)[0, 0, 0] == steps[3] % 256


def test_short_episode_keeps_every_frame_with_depth_and_poses():
    recorder = EpisodeMemoryRecorder(max_frames=16)
    recorder.start()
    for t in range(5):
        recorder.add(frame(t), depth=np.full((8, 8), t, np.uint16), pose=np.eye(4) * (t + 1))
    memory = recorder.memory(fps=5.0)
    assert len(memory) == 5 and memory.fps == 5.0
    assert memory.depth([4])[0, 0, 0] == 4 and memory.poses([2])[0, 0, 0] == 3


@pytest.mark.parametrize("fmt", ["folder", "mp4"])
def test_episode_written_to_disk_reads_back_identically(tmp_path, fmt, demo_video):
    frames = EpisodeMemory.from_path(demo_video).frames(list(range(0, 40, 4)))
    recorder = EpisodeMemoryRecorder(max_frames=4, out_dir=tmp_path, write_format=fmt)
    recorder.start("ep1", intrinsics={"color": np.eye(3)})
    for f in frames:
        recorder.add(f, pose=np.eye(4))
    target = tmp_path / ("ep1.mp4" if fmt == "mp4" else "ep1")
    assert not target.exists()  # nothing appears before the episode is finished
    assert recorder.finish() == target
    written = EpisodeMemory.from_path(target)
    assert len(written) == 10 and recorder.step_indices == [0, 4, 8]  # all on disk, 3 kept
    np.testing.assert_array_equal(written.frames(), frames)
    if fmt == "folder":
        assert written.has_poses and "color" in written.intrinsics
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left over


def test_an_abandoned_episode_leaves_nothing_on_disk(tmp_path):
    recorder = EpisodeMemoryRecorder(out_dir=tmp_path)
    recorder.start("ep")
    recorder.add(frame(1))
    recorder.start("ep2")  # a reset in the middle of an episode
    recorder.add(frame(2))
    recorder.finish()
    assert [p.name for p in tmp_path.iterdir()] == ["ep2"]
    with pytest.raises(FileExistsError, match="ep2: episode already exists"):
        recorder.start("ep2")


def test_bad_frames_and_settings():
    recorder = EpisodeMemoryRecorder()
    recorder.start()
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        recorder.add(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="no frame was recorded"):
        EpisodeMemoryRecorder().memory()
    with pytest.raises(ValueError, match="write_format"):
        EpisodeMemoryRecorder(write_format="gif")
    with pytest.raises(ValueError, match="a name is needed"):
        EpisodeMemoryRecorder(out_dir="x").start()


def test_a_reused_observation_buffer_does_not_change_what_was_recorded(tmp_path):
    """Simulators hand out the same buffer every step: the recorder keeps and writes copies
    (one per step, shared by the kept frames and the writer)."""
    buffer = frame(0)
    depth = np.zeros((8, 8), np.uint16)
    pose = np.eye(4)
    recorder = EpisodeMemoryRecorder(max_frames=8, out_dir=tmp_path)
    recorder.start("ep")
    for t in range(4):
        buffer[...] = t + 1
        depth[...] = 10 * (t + 1)
        pose[0, 3] = t + 1
        recorder.add(buffer, depth=depth, pose=pose)
    buffer[...] = 99
    depth[...] = 999
    pose[0, 3] = 99
    kept = recorder.memory()
    written = EpisodeMemory.from_path(recorder.finish())
    for memory in (kept, written):
        assert [int(f[0, 0, 0]) for f in memory.frames()] == [1, 2, 3, 4]
        assert [int(d[0, 0]) for d in memory.depth(list(range(4)))] == [10, 20, 30, 40]
        assert [float(p[0, 3]) for p in memory.poses(list(range(4)))] == [1.0, 2.0, 3.0, 4.0]
