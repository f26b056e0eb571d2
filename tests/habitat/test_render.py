"""HM3D rendering from OpenEQA's agent states: the scene lookup runs here; rendering needs a
real habitat-sim and HM3D scenes, so that test is skipped here with the reason."""

from __future__ import annotations

import pytest
from conftest import needs_real_habitat_sim


def test_scene_is_found_under_the_scene_root(tmp_path):
    from habitat_eqarm.data.hm3d_states import StateFileError
    from habitat_eqarm.envs.habitat_render import find_scene

    scene = tmp_path / "val" / "00800-TEEsavR23oF" / "TEEsavR23oF.basis.glb"
    scene.parent.mkdir(parents=True)
    scene.write_bytes(b"glb")
    assert find_scene("00800-TEEsavR23oF/TEEsavR23oF.basis.glb", tmp_path / "val") == scene
    assert find_scene("hm3d/val/00800-TEEsavR23oF/TEEsavR23oF.basis.glb", tmp_path) == scene
    with pytest.raises(StateFileError, match=r"scene 'other\.glb' not found"):
        find_scene("other.glb", tmp_path)


@needs_real_habitat_sim
def test_render_hm3d_episode_with_habitat_sim(tmp_path):  # pragma: no cover - needs the scenes
    import os

    from habitat_eqarm.data.episode import EpisodeMemory
    from habitat_eqarm.envs.habitat_render import render_hm3d_episode

    states, scenes = os.environ.get("EQARM_HM3D_STATES"), os.environ.get("EQARM_HM3D_SCENES")
    if not (states and scenes):
        pytest.skip("set EQARM_HM3D_STATES (an episode folder of *.pkl) and EQARM_HM3D_SCENES")
    out = render_hm3d_episode(states, scenes, tmp_path / "episode")
    memory = EpisodeMemory.from_path(out)
    assert len(memory) > 0 and memory.has_depth and memory.has_poses
