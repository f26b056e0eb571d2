"""`eqarm extract scannet` end to end; `eqarm extract hm3d` without habitat-sim says why."""

from __future__ import annotations

import json
import sys

import pytest

from habitat_eqarm.cli.main import main
from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.testing.sens import synthetic_frames, write_sens


def test_extract_scannet_cli(tmp_path, capsys):
    size = (32, 24)
    write_sens(tmp_path / "scene0000_00.sens", synthetic_frames(9, size, size), num_frames=9,
               color_size=size, depth_size=size, color_compression="png")  # fmt: skip
    out = tmp_path / "frames" / "002-scannet-scene0000_00"
    argv = ["extract", "scannet", "--sens", str(tmp_path / "scene0000_00.sens"), "--out", str(out)]
    assert main([*argv, "--frame_skip", "2", "--max_frames", "3"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"out": str(out), "frames": 3, "sens_frames": 9}
    memory = EpisodeMemory.from_path(out)
    assert len(memory) == 3 and memory.has_depth and memory.has_poses
    assert sorted(p.name for p in out.glob("*-rgb.png")) == [
        "000000-rgb.png",
        "000002-rgb.png",
        "000004-rgb.png",
    ]
    assert main(argv) == 1  # the folder exists: a one-line error, nothing overwritten
    assert "already exists" in capsys.readouterr().err


def test_extract_scannet_reports_a_truncated_file(tmp_path, capsys):
    size = (16, 12)
    path = write_sens(tmp_path / "s.sens", synthetic_frames(3, size, size), num_frames=3,
                      color_size=size, depth_size=size, color_compression="raw")  # fmt: skip
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["extract", "scannet", "--sens", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "frame 2 of 3" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.skipif("habitat_sim" in sys.modules, reason="checks the message without habitat-sim")
def test_extract_hm3d_without_habitat_sim_says_how_to_install(tmp_path, capsys):
    argv = ["extract", "hm3d", "--states", str(tmp_path), "--scene_root", str(tmp_path)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "habitat-sim" in err and "conda install habitat-sim" in err
