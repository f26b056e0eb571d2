"""The .sens reader and extraction, on files written from the documented layout."""

from __future__ import annotations

import numpy as np
import pytest

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.scannet import SensError, SensReader, extract_sens
from habitat_eqarm.testing.sens import synthetic_frames, write_sens

COLOR, DEPTH = (40, 30), (20, 15)


def _write(path, n=6, color="raw", depth="raw_ushort"):
    k = np.diag([50.0, 50.0, 1.0, 1.0])
    frames = list(synthetic_frames(n, COLOR, DEPTH))
    write_sens(path, iter(frames), num_frames=n, color_size=COLOR, depth_size=DEPTH,
               color_compression=color, depth_compression=depth, intrinsic_color=k)  # fmt: skip
    return frames


@pytest.mark.parametrize(("color", "depth"), [("raw", "raw_ushort"), ("png", "zlib_ushort")])
def test_lossless_variants_read_back_exactly(tmp_path, color, depth):
    frames = _write(tmp_path / "s.sens", color=color, depth=depth)
    with SensReader(tmp_path / "s.sens") as reader:
        h = reader.header
        assert (h.color_width, h.color_height, h.depth_width, h.depth_height) == (*COLOR, *DEPTH)
        assert (h.color_compression, h.depth_compression) == (color, depth)
        assert h.depth_shift == 1000.0 and h.sensor_name == "StructureSensor"
        assert h.intrinsic_color[0, 0] == 50.0 and len(reader) == 6
        read = list(reader.frames())
        for frame, (rgb, dep, pose) in zip(read, frames, strict=True):
            np.testing.assert_array_equal(reader.color(frame), rgb)
            np.testing.assert_array_equal(reader.depth(frame), dep)
            np.testing.assert_allclose(frame.camera_to_world, pose, atol=1e-6)


def test_jpeg_colour_is_close_and_skip_and_limit_select_frames(tmp_path):
    frames = _write(tmp_path / "s.sens", n=7, color="jpeg", depth="zlib_ushort")
    with SensReader(tmp_path / "s.sens") as reader:
        picked = list(reader.frames(frame_skip=3, max_frames=2))
        assert [f.index for f in picked] == [0, 3]
        diff = np.abs(reader.color(picked[1]).astype(int) - frames[3][0].astype(int))
        assert diff.mean() < 4  # JPEG is lossy, but close


def test_truncated_file_names_the_frame(tmp_path):
    path = tmp_path / "s.sens"
    _write(path, n=4, color="png", depth="zlib_ushort")
    data = path.read_bytes()
    path.write_bytes(data[:-50])  # the last frame's depth is cut short
    with SensReader(path) as reader, pytest.raises(SensError, match=r"truncated at frame 3 of 4"):
        list(reader.frames())
    out = tmp_path / "episode"
    with pytest.raises(SensError, match=r"frame 3 of 4"):
        extract_sens(path, out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["s.sens"]  # no leftovers


def test_bad_header_is_named(tmp_path):
    path = tmp_path / "bad.sens"
    path.write_bytes(b"\x03\x00\x00\x00" + b"\x00" * 40)
    with pytest.raises(SensError, match=r"bad.sens: not a ScanNet .sens file of version 4"):
        SensReader(path)
    path.write_bytes(b"\x04\x00\x00")
    with pytest.raises(SensError, match=r"truncated header \(version\)"):
        SensReader(path)


def test_extract_writes_openeqa_layout_that_episode_memory_reads(tmp_path):
    frames = _write(tmp_path / "s.sens", n=5, color="png", depth="zlib_ushort")
    stats = extract_sens(tmp_path / "s.sens", tmp_path / "ep", frame_skip=2)
    assert stats.frames == 3 and stats.total_frames == 5
    names = sorted(p.name for p in (tmp_path / "ep").iterdir())
    assert "000004-rgb.png" in names and "000004-depth.png" in names and "000004.txt" in names
    assert {"intrinsic_color.txt", "intrinsic_depth.txt", "extrinsic_color.txt"} <= set(names)
    memory = EpisodeMemory.from_path(tmp_path / "ep")
    assert len(memory) == 3 and memory.has_depth and memory.has_poses
    np.testing.assert_array_equal(memory.frames([2])[0], frames[4][0])
    np.testing.assert_array_equal(memory.depth([1])[0], frames[2][1])
    np.testing.assert_allclose(memory.poses([2])[0], frames[4][2], atol=1e-5)
    assert memory.intrinsics["color"][0, 0] == 50.0
    with pytest.raises(FileExistsError):
        extract_sens(tmp_path / "s.sens", tmp_path / "ep")


def test_memory_stays_flat_on_a_long_file(tmp_path):
    import tracemalloc

    n, size = 120, (160, 120)
    write_sens(tmp_path / "long.sens", synthetic_frames(n, size, size), num_frames=n,
               color_size=size, depth_size=size, color_compression="raw")  # fmt: skip
    file_mb = (tmp_path / "long.sens").stat().st_size / 2**20
    tracemalloc.start()
    extract_sens(tmp_path / "long.sens", tmp_path / "ep", png_compress_level=0)
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert len(list((tmp_path / "ep").glob("*-rgb.png"))) == n
    assert peak_mb < file_mb / 3, (peak_mb, file_mb)
