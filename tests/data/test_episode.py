import pickle

import numpy as np
import pytest

from habitat_eqarm.data import EpisodeMemory, EpisodeMemoryError
from habitat_eqarm.data.episode import write_episode_folder


def small_frames(n=6, h=24, w=32):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(n, h, w, 3), dtype=np.uint8)


# -- the real demo video ---------------------------------------------------------------------


def test_real_demo_video_opens_with_168_frames_of_1280x720(demo_video):
    memory = EpisodeMemory.from_path(demo_video)
    assert memory.kind == "video"
    assert len(memory) == 168
    assert memory.fps == pytest.approx(10.0, abs=0.1)
    frames = memory.frames([0, 167])
    assert frames.shape == (2, 720, 1280, 3)
    assert frames.dtype == np.uint8


def test_real_video_frames_decode_consistently_in_any_order(demo_video):
    memory = EpisodeMemory.from_path(demo_video)
    forward = memory.frames([10, 90])
    backward = memory.frames([90, 10])
    np.testing.assert_array_equal(forward, backward[::-1])
    np.testing.assert_array_equal(memory.frame(90), forward[1])
    assert not np.array_equal(forward[0], forward[1])


def test_memory_pickles_without_its_decoder(demo_video):
    memory = EpisodeMemory.from_path(demo_video)
    first = memory.frame(5)
    clone = pickle.loads(pickle.dumps(memory))
    np.testing.assert_array_equal(clone.frame(5), first)


# -- folders ----------------------------------------------------------------------------------


def test_folder_round_trips_rgb_depth_poses_and_intrinsics(tmp_path):
    frames = small_frames()
    depth = np.arange(6 * 24 * 32, dtype=np.uint16).reshape(6, 24, 32)
    poses = np.stack([np.eye(4) * (i + 1) for i in range(6)])
    intr = {"color": np.eye(3) * 2, "depth": np.eye(4)}
    write_episode_folder(tmp_path / "ep", frames, depth=depth, poses=poses, intrinsics=intr)
    memory = EpisodeMemory.from_path(tmp_path / "ep")
    assert (memory.kind, len(memory), memory.fps) == ("folder", 6, None)
    assert memory.has_depth and memory.has_poses
    np.testing.assert_array_equal(memory.frames(), frames)
    np.testing.assert_array_equal(memory.depth([2, 3]), depth[[2, 3]])
    np.testing.assert_array_equal(memory.poses([5]), poses[[5]])
    np.testing.assert_array_equal(memory.intrinsics["color"], intr["color"])
    np.testing.assert_array_equal(memory.intrinsics["depth"], intr["depth"])


def test_folder_frames_sort_by_integer_index_not_by_name(tmp_path):
    from PIL import Image

    folder = tmp_path / "ep"
    folder.mkdir()
    for index, value in [(10, 100), (2, 20), (1, 10)]:  # unpadded: "10" sorts before "2" as text
        Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(folder / f"{index}-rgb.png")
    (folder / "notes.txt").write_text("ignored")
    memory = EpisodeMemory.from_folder(folder)
    assert [int(f[0, 0, 0]) for f in memory.frames()] == [10, 20, 100]
    assert not memory.has_depth


def test_opening_a_folder_decodes_no_pixels(tmp_path):
    frames = small_frames(3)
    write_episode_folder(tmp_path / "ep", frames)
    (tmp_path / "ep" / "000001-rgb.png").write_bytes(b"garbage")  # only decoding can notice
    memory = EpisodeMemory.from_folder(tmp_path / "ep")
    assert len(memory) == 3
    np.testing.assert_array_equal(memory.frames([0, 2]), frames[[0, 2]])


def test_write_episode_folder_refuses_to_overwrite_and_leaves_nothing_on_failure(tmp_path):
    write_episode_folder(tmp_path / "ep", small_frames(2))
    with pytest.raises(FileExistsError, match="ep"):
        write_episode_folder(tmp_path / "ep", small_frames(2))
    with pytest.raises(ValueError, match="frame 1: a pose must be 4x4"):
        write_episode_folder(tmp_path / "ep2", small_frames(2), poses=[np.eye(4), np.ones(3)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep"]


# -- in-memory frames -------------------------------------------------------------------------


def test_in_memory_frames(tmp_path):
    frames = small_frames(4)
    memory = EpisodeMemory.from_frames(list(frames), fps=5.0, poses=np.stack([np.eye(4)] * 4))
    assert (memory.kind, len(memory), memory.fps) == ("array", 4, 5.0)
    np.testing.assert_array_equal(memory.frames([3, 1]), frames[[3, 1]])
    assert memory.has_poses and not memory.has_depth
    assert memory.thumbnails([0, 1], size=(8, 6)).shape == (2, 6, 8, 3)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((0, 4, 4, 3), np.uint8), "shape"),
        (np.zeros((2, 4, 4), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.float32), "uint8"),
    ],
)
def test_in_memory_frames_are_checked(frames, message):
    with pytest.raises(EpisodeMemoryError, match=message):
        EpisodeMemory.from_frames(frames)


def test_depth_and_poses_must_match_frame_count():
    with pytest.raises(EpisodeMemoryError, match="poses has 1 entries for 4 frames"):
        EpisodeMemory.from_frames(small_frames(4), poses=[np.eye(4)])


# -- bad input --------------------------------------------------------------------------------


def test_missing_path_names_it(tmp_path):
    with pytest.raises(EpisodeMemoryError, match=r"nope\.mp4: no such episode folder or video"):
        EpisodeMemory.from_path(tmp_path / "nope.mp4")
    with pytest.raises(EpisodeMemoryError, match=r"nope\.mp4: video file not found"):
        EpisodeMemory.from_video(tmp_path / "nope.mp4")


def test_unreadable_video_names_it(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a real video" * 100)
    with pytest.raises(EpisodeMemoryError, match=r"broken\.mp4: cannot open video"):
        EpisodeMemory.from_path(bad)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EpisodeMemoryError, match=r"empty: empty episode folder"):
        EpisodeMemory.from_path(tmp_path / "empty")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_frame_that_fails_to_decode_names_the_file(tmp_path, damage):
    write_episode_folder(tmp_path / "ep", small_frames(3, h=64, w=64))
    target = tmp_path / "ep" / "000001-rgb.png"
    data = target.read_bytes()
    target.write_bytes(b"garbage" if damage == "garbage" else data[: len(data) // 2])
    memory = EpisodeMemory.from_path(tmp_path / "ep")
    memory.frames([0, 2])
    with pytest.raises(EpisodeMemoryError, match=r"000001-rgb\.png: cannot decode frame"):
        memory.frames([0, 1])


def test_missing_depth_and_poses_say_so(tmp_path):
    write_episode_folder(tmp_path / "ep", small_frames(2))
    memory = EpisodeMemory.from_path(tmp_path / "ep")
    with pytest.raises(EpisodeMemoryError, match="no depth maps"):
        memory.depth([0])
    with pytest.raises(EpisodeMemoryError, match="no camera poses"):
        memory.poses([0])


def test_bad_pose_file_names_it(tmp_path):
    write_episode_folder(tmp_path / "ep", small_frames(2), poses=np.stack([np.eye(4)] * 2))
    (tmp_path / "ep" / "000001.txt").write_text("1 2 3\n")
    memory = EpisodeMemory.from_path(tmp_path / "ep")
    with pytest.raises(EpisodeMemoryError, match=r"000001\.txt: expected a 4x4 matrix"):
        memory.poses([1])


def test_out_of_range_index_is_an_index_error(demo_video):
    memory = EpisodeMemory.from_path(demo_video)
    with pytest.raises(IndexError, match="frame index 168 out of range for 168 frames"):
        memory.frames([0, 168])
