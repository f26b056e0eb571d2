"""Episode references: the tag survives any text around it, the store resolves ids and hashes,
and bad references are refused with a message that says what is wrong."""

import numpy as np
import pytest

from habitat_eqarm.data.episode_ref import (
    EpisodeRef,
    EpisodeRefError,
    EpisodeStore,
    embed_ref,
    find_ref,
    frames_hash,
    strip_ref,
)


def test_a_ref_embedded_in_a_prompt_reads_back_and_strips_away():
    ref = EpisodeRef("What is on the table?", "q1", "hm3d-v0/000-abc", [0, 4, 9])
    prompt = embed_ref("You are in a house. Answer the question.", ref)
    assert find_ref(prompt + " and the policy's answer") == ref
    assert find_ref(prompt + prompt) == ref  # a prompt repeated in its query: the same ref
    assert strip_ref(prompt) == "You are in a house. Answer the question."
    assert EpisodeRef.parse(ref.to_json()) == ref == EpisodeRef.parse(prompt)
    assert (
        EpisodeRef.parse({"question": "?", "frames_hash": "a" * 64}).frames_key
        == "hash:" + "a" * 64
    )
    assert find_ref("no tag here") is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"episode_id": "e"}, "non-empty 'question'"),
        ({"question": "?"}, "exactly one of episode_id, frames_hash"),
        ({"question": "?", "episode_id": "e", "frames_hash": "a" * 64}, "exactly one"),
        ({"question": "?", "episode_id": "../../etc"}, "'/'-separated names"),
        ({"question": "?", "episode_id": "/abs"}, "'/'-separated names"),
        ({"question": "?", "frames_hash": "xyz"}, "not a sha256"),
        ({"question": "?", "episode_id": "e", "keyframe_indices": [-1]}, "not indices"),
        ({"question": "?", "episode_id": "e", "colour": 1}, "unknown fields ['colour']"),
    ],
)
def test_bad_refs_are_refused_naming_the_problem(data, needle):
    with pytest.raises(EpisodeRefError, match="row 3") as info:
        EpisodeRef.from_dict(data, "row 3")
    assert needle in str(info.value)


def test_two_different_tags_or_bad_json_are_errors():
    a = embed_ref("", EpisodeRef("?", episode_id="a"))
    b = embed_ref("", EpisodeRef("?", episode_id="b"))
    with pytest.raises(EpisodeRefError, match="2 different"):
        find_ref(a + b, "query[0]")
    with pytest.raises(EpisodeRefError, match="query\\[1\\]: the <eqarm_ref> tag is not JSON"):
        find_ref("<eqarm_ref>{oops</eqarm_ref>", "query[1]")


def test_the_store_resolves_episode_ids_and_content_hashes(tmp_path, synthetic_folder):
    memory, questions = synthetic_folder
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "seed0").symlink_to(questions[0].episode_path)
    store = EpisodeStore(tmp_path)

    by_id = store.memory(EpisodeRef("?", episode_id=questions[0].episode_id))
    assert len(by_id) == len(memory)
    np.testing.assert_array_equal(by_id.frames([0, 7]), memory.frames([0, 7]))

    keyframes = memory.frames([1, 2, 3])
    digest = store.put_frames(keyframes)
    assert digest == frames_hash(keyframes) and store.put_frames(keyframes) == digest
    np.testing.assert_array_equal(
        store.memory(EpisodeRef("?", frames_hash=digest)).frames(), keyframes
    )
    assert frames_hash(keyframes[:, :, ::-1]) != digest  # the content, not just the shape

    with pytest.raises(
        EpisodeRefError, match="episode 'synthetic/seed9': not in the episode store"
    ):
        store.memory(EpisodeRef("?", episode_id="synthetic/seed9"))
    with pytest.raises(EpisodeRefError, match="not in the store"):
        store.memory(EpisodeRef("?", frames_hash="0" * 64))
    with pytest.raises(EpisodeRefError, match="not a folder"):
        EpisodeStore(tmp_path / "missing")
