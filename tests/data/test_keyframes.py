import numpy as np
import pytest

from habitat_eqarm.data import EpisodeMemory, select_keyframes, uniform_indices, view_spread
from habitat_eqarm.data.keyframes import binned_maximin


def test_uniform_on_real_demo_video_matches_openeqa(demo_video):
    memory = EpisodeMemory.from_path(demo_video)
    assert memory.keyframes() == [0, 42, 84, 125, 167]
    assert memory.keyframes(5, "uniform") == [int(i) for i in np.round(np.linspace(0, 167, 5))]


def test_diverse_on_real_demo_video_spreads_views_more_than_uniform(demo_video):
    memory = EpisodeMemory.from_path(demo_video)
    uniform = memory.keyframes(5, "uniform")
    diverse = memory.keyframes(5, "diverse")
    assert len(diverse) == 5 and diverse == sorted(set(diverse))
    # one pick per fifth of the episode, like uniform: no stretch of the walk is left out
    assert [i * 5 // 168 for i in diverse] == [0, 1, 2, 3, 4]
    u, d = view_spread(memory.thumbnails(uniform)), view_spread(memory.thumbnails(diverse))
    assert d["min_pixel_distance"] > u["min_pixel_distance"]
    assert d["mean_pixel_distance"] > u["mean_pixel_distance"]
    assert d["mean_histogram_distance"] > u["mean_histogram_distance"]  # a feature it ignores


def test_diverse_skips_a_view_the_agent_keeps_returning_to():
    # 5 stretches of 10 frames: 8 frames of one "home" view, then 2 of a view seen only there
    rng = np.random.default_rng(0)
    home, *others = rng.integers(0, 255, size=(6, 18, 32, 3), dtype=np.uint8)
    frames = np.concatenate([np.stack([home] * 8 + [view] * 2) for view in others])
    memory = EpisodeMemory.from_frames(frames)

    def views_seen(indices):
        return {0 if np.array_equal(frames[i], home) else 1 + i // 10 for i in indices}

    assert len(views_seen(memory.keyframes(5, "uniform"))) == 2
    assert len(views_seen(memory.keyframes(5, "diverse"))) == 5


def test_binned_maximin_starts_uniform_and_stays_in_bins():
    features = np.zeros((20, 3), np.float32)  # all frames alike: nothing to improve
    assert binned_maximin(features, 4) == uniform_indices(20, 4)


@pytest.mark.parametrize("method", ["uniform", "diverse"])
def test_more_keyframes_than_frames_returns_every_frame_once(method):
    memory = EpisodeMemory.from_frames(np.zeros((3, 8, 8, 3), np.uint8))
    assert select_keyframes(memory, 5, method) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"asked for 5 keyframes but .* has only 3 frames"):
        select_keyframes(memory, 5, method, strict=True)


def test_long_episode_costs_at_most_max_candidates_decodes():
    calls = []

    class Counting(EpisodeMemory):
        def thumbnails(self, indices, size=(32, 18)):
            calls.append(len(indices))
            return super().thumbnails(indices, size)

    frames = np.random.default_rng(1).integers(0, 255, (1000, 18, 32, 3), dtype=np.uint8)
    memory = Counting(kind="array", length=1000, array=frames)
    picked = memory.keyframes(5, "diverse", max_candidates=64)
    assert calls == [64] and len(picked) == 5 and picked == sorted(picked)


def test_bad_arguments():
    memory = EpisodeMemory.from_frames(np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown keyframe method 'random'"):
        memory.keyframes(2, "random")
    with pytest.raises(ValueError, match="n must be positive"):
        memory.keyframes(0)
