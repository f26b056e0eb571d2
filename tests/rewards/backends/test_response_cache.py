import numpy as np

from habitat_eqarm.rewards.backends.response_cache import ResponseCache, inputs_digest

KEY = {"model": "m", "prompt_id": "p", "inputs": "abc", "sample": 0}


def test_entries_persist_across_instances(tmp_path):
    ResponseCache(tmp_path).put(KEY, "<critique>ok</critique><score>7</score>")
    assert ResponseCache(tmp_path).get(KEY) == "<critique>ok</critique><score>7</score>"
    assert ResponseCache(tmp_path).get({**KEY, "sample": 1}) is None
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary files left


def test_torn_or_foreign_entries_count_as_misses(tmp_path, caplog):
    cache = ResponseCache(tmp_path)
    cache.put(KEY, "text")
    path = cache.path(KEY)
    for content in (b'{"key": {"model"', b"\xff\xfe", b'{"key": {"model": "other"}, "text": "x"}'):
        path.write_bytes(content)
        assert cache.get(KEY) is None
    assert caplog.text.count("ignoring") == 3
    cache.put(KEY, "again")
    assert cache.get(KEY) == "again"


def test_inputs_digest_sees_every_pixel_and_setting():
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    base = inputs_digest([{"role": "user", "content": "q"}], frames, quality=90)
    changed = frames.copy()
    changed[1, 3, 3, 2] = 1
    assert inputs_digest([{"role": "user", "content": "q"}], changed, quality=90) != base
    assert inputs_digest([{"role": "user", "content": "q"}], frames, quality=80) != base
    assert inputs_digest([{"role": "user", "content": "q?"}], frames, quality=90) != base
    assert inputs_digest([{"role": "user", "content": "q"}], frames.copy(), quality=90) == base


def test_inputs_digest_of_text_only_requests():
    """No frames (LLM-match marks): the digest still covers the messages and the frame shape."""
    text = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
    none = np.zeros((0, 1, 1, 3), np.uint8)
    assert inputs_digest(text, none) == inputs_digest(text, none.copy())
    assert inputs_digest(text, none) != inputs_digest([{"role": "user", "content": "r"}], none)
    assert inputs_digest(text, none) != inputs_digest(text, np.zeros((1, 1, 1, 3), np.uint8))
