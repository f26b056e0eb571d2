"""The one episode-memory cache: each key opened once while among the recent ones, the least
recently used closed first, opening errors named and nothing kept; cached keyframe images."""

from __future__ import annotations

import numpy as np
import pytest

from habitat_eqarm.data.episode import EpisodeMemory, EpisodeMemoryError, write_episode_folder
from habitat_eqarm.data.episode_cache import EpisodeCache, RecentlyUsed, keyframe_images


def folders(tmp_path, n):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        frames = rng.integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
        out.append(write_episode_folder(tmp_path / f"ep{i}", frames))
    return out


def test_a_path_is_opened_once_and_the_least_recently_used_is_dropped(tmp_path):
    a, b, c = folders(tmp_path, 3)
    cache = EpisodeCache(size=2)
    first = cache.get(a)
    assert cache.get(str(a)) is first  # a path and its str are one key
    assert cache.get(b) is not first and len(cache) == 2
    cache.get(a)  # a is now the most recent: c pushes b out
    cache.get(c)
    assert str(a) in cache and str(c) in cache and str(b) not in cache
    assert cache.get(a) is first
    np.testing.assert_array_equal(first.frames([0, 2]), EpisodeMemory.from_path(a).frames([0, 2]))


def test_other_keys_use_their_opener_and_size_none_keeps_every_one():
    opened = []

    def opener(i):
        def open_():
            opened.append(i)
            return EpisodeMemory.from_frames(np.full((1, 2, 2, 3), i, np.uint8))

        return open_

    cache = EpisodeCache(size=None)
    for _ in range(2):
        got = [cache.get(f"k{i}", opener(i)) for i in range(20)]
    assert opened == list(range(20))  # each key opened once, none dropped
    assert [int(m.frame(0)[0, 0, 0]) for m in got] == list(range(20))
    given = EpisodeMemory.from_frames(np.zeros((1, 2, 2, 3), np.uint8))
    cache.put("given", given)
    assert cache.get("given", opener(99)) is given and 99 not in opened


def test_an_unreadable_episode_is_named_and_not_kept(tmp_path):
    cache = EpisodeCache()
    with pytest.raises(EpisodeMemoryError, match="nope"):
        cache.get(tmp_path / "nope")
    assert len(cache) == 0
    with pytest.raises(ValueError, match="at least 1"):
        EpisodeCache(size=0)


def test_recently_used_keeps_the_first_value_made_for_a_key():
    lru: RecentlyUsed[str, int] = RecentlyUsed(2)
    assert lru.get("a", lambda: 1) == 1
    assert lru.get("a", lambda: 2) == 1
    lru.put("b", 3)
    lru.put("c", 4)
    assert "a" not in lru and len(lru) == 2


def test_keyframe_images_decode_once_and_match_the_frames(tmp_path):
    (path,) = folders(tmp_path, 1)
    images = keyframe_images(str(path), (2, 0))
    assert keyframe_images(path, [2, 0]) is images  # the decoded tuple is reused
    expected = EpisodeMemory.from_path(path).frames([2, 0])
    for image, frame in zip(images, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(image), frame)
