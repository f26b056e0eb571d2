"""The score memo: least recently used out first, keys that change with every input."""

import pytest

from habitat_eqarm.serve.memo import ScoreMemo, memo_key

INSTANCE = {
    "question": "q",
    "predicted_answer": "a",
    "reasoning_steps": ["s"],
    "keyframe_indices": [],
}
OPTIONS = {"k": 4, "seed": 0, "temperature": 0.8}


def test_least_recently_used_entry_goes_first():
    memo = ScoreMemo(2)
    memo.put("a", {"score": 1.0})
    memo.put("b", {"score": 2.0})
    assert memo.get("a") == {"score": 1.0}  # "a" is now the most recent
    memo.put("c", {"score": 3.0})
    assert memo.get("b") is None and memo.get("a") and memo.get("c")
    got = memo.get("a")
    got["score"] = 99.0  # a copy: callers cannot change what is remembered
    assert memo.get("a") == {"score": 1.0}
    assert memo.to_dict() == {"size": 2, "entries": 2, "hits": 5, "misses": 1}
    ScoreMemo(0).put("a", {})
    with pytest.raises(ValueError, match="at least 0"):
        ScoreMemo(-1)


@pytest.mark.parametrize(
    "change",
    [
        ("frames", "episode:other"),
        ("question", "q2"),
        ("predicted_answer", "b"),
        ("reasoning_steps", ["t"]),
        ("keyframe_indices", [1]),
        ("k", 8),
        ("seed", 1),
        ("temperature", 0.5),
    ],
)
def test_every_input_of_a_judgement_is_in_its_key(change):
    name, value = change
    base = memo_key("episode:e", INSTANCE, OPTIONS)
    frames = value if name == "frames" else "episode:e"
    instance = {**INSTANCE, name: value} if name in INSTANCE else INSTANCE
    options = {**OPTIONS, name: value} if name in OPTIONS else OPTIONS
    assert memo_key(frames, instance, options) != base
    assert memo_key("episode:e", {**INSTANCE, "question_id": "other"}, OPTIONS) == base
