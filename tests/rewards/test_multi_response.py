"""The multi-response protocol: strict parser, prompt, one-prompt scoring and its cache."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from habitat_eqarm.data.schema import EQAInstance, response_id
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.rewards.model import EQARewardModel, Judgement
from habitat_eqarm.rewards.multi_response import (
    MULTI_RESPONSE_PROMPT,
    multi_prompt_text,
    parse_multi_evaluation,
    vote_orders,
)
from habitat_eqarm.rewards.sample_cache import EvalSettings, SampleCache, sample_all_multi


def block(label, score, critique="Grounded."):
    body = f"<critique>{critique}</critique><score>{score}</score>"
    return f'<evaluation response="{label}">{body}</evaluation>'


def test_well_formed_in_any_block_order():
    text = "\n" + block(2, 3, "Wrong room.") + "\n\n" + block(1, 9) + "  "
    parsed = parse_multi_evaluation(text, 2)
    assert parsed.format_ok and parsed.reason is None
    assert parsed.scores == [9, 3] and parsed.critiques == ["Grounded.", "Wrong room."]


@pytest.mark.parametrize(
    ("text", "n", "reason"),
    [
        (block(1, 9), 2, "1 evaluations for 2 responses (missing [2])"),
        (block(1, 9) + block(2, 3) + block(3, 5), 2, "names no response"),
        (block(1, 9) + block(1, 3), 2, "two evaluations of response 1"),
        (block(1, 9) + block(2, 11), 2, "score 11 outside 0..10"),
        (block(1, -1) + block(2, 3), 2, "score -1 outside 0..10"),
        (block("one", 9) + block(2, 3), 2, "'one' is not a number"),
        (block(0, 9) + block(1, 3), 2, "'0' is not a number"),
        (block(1, 9) + "I hope that helps" + block(2, 3), 2, "text outside"),
        (block(1, 9) + block(2, 3) + " done", 2, "text outside"),
        (block(1, "7.5") + block(2, 3), 2, "response 1: not one non-empty"),
        (block(1, 9, " ") + block(2, 3), 2, "response 1: not one non-empty"),
        (block(1, "9</score><score>8") + block(2, 3), 2, "response 1: not one"),  # two scores
        ("<critique>x</critique><score>7</score>", 1, "text outside"),  # the pointwise format
        ("", 2, "0 evaluations for 2 responses"),
        (None, 2, "output is not text"),
    ],
)
def test_bad_output_is_invalid_with_its_reason(text, n, reason):
    parsed = parse_multi_evaluation(text, n)
    assert not parsed.format_ok and reason in parsed.reason
    assert parsed.scores == [None] * n and parsed.critiques == [None] * n  # nothing kept


TAGS = ['<evaluation response="1">', '<evaluation response="2">', '<evaluation response="x">']
TAGS += ["</evaluation>", "<critique>", "</critique>", "<score>", "</score>", "7", "11", " "]


@settings(max_examples=400, deadline=None)
@given(
    st.text() | st.lists(st.sampled_from(TAGS) | st.text(max_size=5), max_size=16).map("".join),
    st.integers(1, 4),
)
def test_never_raises_and_format_ok_means_one_valid_score_per_response(text, n):
    parsed = parse_multi_evaluation(text, n)
    assert len(parsed.scores) == len(parsed.critiques) == n
    if parsed.format_ok:
        assert parsed.reason is None
        assert all(s is not None and 0 <= s <= 10 for s in parsed.scores)
        assert all(parsed.critiques)
    else:
        assert parsed.reason and parsed.scores == [None] * n


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_well_formed_output_round_trips_in_any_order(scores, rng):
    labels = list(range(1, len(scores) + 1))
    rng.shuffle(labels)
    text = "\n".join(block(i, scores[i - 1], f"about {i}") for i in labels)
    parsed = parse_multi_evaluation(text, len(scores))
    assert parsed.format_ok and parsed.scores == scores
    assert parsed.critiques == [f"about {i}" for i in range(1, len(scores) + 1)]
    assert not parse_multi_evaluation(text, len(scores) + 1).format_ok  # one missing


def test_prompt_lists_every_response_and_hides_the_gt():
    group = [
        EQAInstance(question_id=f"q#{i}", question="Where?", gt_answer="SECRET", predicted_answer=a)
        for i, a in enumerate(["kitchen", "garage"])
    ]
    text = multi_prompt_text(group)
    assert "[Response 1]" in text and "[End of response 2]" in text and "(1, 2)" in text
    assert text.index("kitchen") < text.index("garage") and "SECRET" not in text
    assert MULTI_RESPONSE_PROMPT.id == "eqarm-rm-multi-v1"


def test_vote_orders_are_seeded_permutations():
    orders = vote_orders(5, 8, seed=3, shuffle=True)
    assert all(sorted(o) == list(range(5)) for o in orders) and len({tuple(o) for o in orders}) > 1
    assert orders == vote_orders(5, 8, seed=3, shuffle=True)
    assert vote_orders(3, 2, seed=3, shuffle=False) == [[0, 1, 2], [0, 1, 2]]


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    return make_synthetic_episode(tmp_path_factory.mktemp("multi") / "episode", seed=0)


def group_of(question, values):
    return [
        EQAInstance(
            question_id=response_id(question.question_id, n),
            question=question.question,
            episode_id=question.episode_id,
            episode_path=question.episode_path,
            predicted_answer=f"value {v}",
            reasoning_steps=["I look around."],
            gt_score=v,
        )
        for n, v in enumerate(values)
    ]


def test_shuffled_votes_map_scores_back_to_their_responses(episode, answer_value_judge):
    _, questions = episode
    judge = answer_value_judge()
    model = EQARewardModel(judge, num_keyframes=3)
    groups = [group_of(questions[0], [1, 5, 9, 4]), group_of(questions[1], [8, 2])]
    judged = model.score_multi(groups, k=6, seed=0, aggregate="mean")
    assert len(judge.prompts) == 12  # one prompt per vote with shuffling
    orders = {re.findall(r"value (\d+)", p)[0] for p in judge.prompts[:6]}
    assert len(orders) > 1  # votes put different responses first
    for group, judgements in zip(groups, judged, strict=True):
        for inst, j in zip(group, judgements, strict=True):
            assert j.question_id == inst.question_id and j.prompt_id == "eqarm-rm-multi-v1"
            assert j.scores == [inst.gt_score] * 6 and j.score == inst.gt_score
            assert j.prefix(2).n_valid == 2 and len(j.keyframe_indices) == 3
            assert all(s.position is not None and 0 <= s.position < len(group) for s in j.samples)
    # each vote lists every response once: positions of a vote are a permutation
    for vote in range(6):
        positions = sorted(j.samples[vote].position for j in judged[0])
        assert positions == [0, 1, 2, 3]
    # a group's seconds are split over its responses: 6 votes x 1 s / 4 responses
    assert judged[0][0].timings["generate_s"] == pytest.approx(1.5)


def test_without_shuffle_one_prompt_serves_all_votes(episode, answer_value_judge):
    judge = answer_value_judge()
    (judgements,) = EQARewardModel(judge, num_keyframes=3).score_multi(
        [group_of(episode[1][0], [3, 7])], k=4, shuffle=False
    )
    assert len(judge.prompts) == 1 and [j.scores for j in judgements] == [[3] * 4, [7] * 4]


def test_bad_groups_are_refused(episode, answer_value_judge):
    model = EQARewardModel(answer_value_judge())
    a, b = group_of(episode[1][0], [3]), group_of(episode[1][1], [5])
    with pytest.raises(ValueError, match="has another question"):
        model.score_multi([a + b])
    with pytest.raises(ValueError, match="repeated question_id"):
        model.score_multi([a + a])
    with pytest.raises(ValueError, match="k must be at least 1"):
        model.score_multi([a], k=0)


def test_tiny_model_one_prompt_for_the_group(tiny_model_path, episode):
    """The real HF path: an untrained model's votes are invalid, each with its reason."""
    model = EQARewardModel.from_pretrained(str(tiny_model_path), num_keyframes=2)
    group = group_of(episode[1][0], [2, 9, 5])
    (judgements,) = model.score_multi([group], k=2, seed=0, max_new_tokens=12)
    for j in judgements:
        assert len(j.samples) == 2 and j.n_valid == 0 and j.score is None
        assert all(s.reason and not s.format_ok for s in j.samples)
        assert {"frames_s", "preprocess_s", "generate_s"} <= set(j.timings)
    # the same vote text is shared by every response of the group
    assert judgements[0].samples[0].text == judgements[2].samples[0].text


def test_sample_all_multi_caches_and_resumes(tmp_path, episode, answer_value_judge):
    _, questions = episode
    instances = group_of(questions[0], [1, 6]) + group_of(questions[1], [4, 8, 2])
    judge = answer_value_judge()
    model = EQARewardModel(judge, num_keyframes=2)
    settings_ = EvalSettings(ks=(1, 2), batch_size=1)
    cache = SampleCache(tmp_path / "samples.jsonl", {"protocol": "multi"})
    done, failures = sample_all_multi(model, instances[:2], settings_, cache)
    assert failures == [] and len(done) == 2 and len(judge.prompts) == 2
    counted = []
    again = SampleCache(tmp_path / "samples.jsonl", {"protocol": "multi"}).load()
    done, _ = sample_all_multi(model, instances, settings_, again, progress=counted.append)
    assert len(judge.prompts) == 4  # only the second group was scored
    assert counted == [2, 3] and {j.score for j in done.values()} == {1, 6, 4, 8, 2}
    assert (
        Judgement.from_dict(done[instances[0].question_id].to_dict())
        == done[instances[0].question_id]
    )


def test_sample_all_multi_reports_a_failing_group(tmp_path, episode, answer_value_judge):
    _, questions = episode
    broken = group_of(questions[1], [4, 8])
    broken[1].episode_path = str(tmp_path / "missing")  # another episode: a bad group
    instances = group_of(questions[0], [1, 6]) + broken
    cache = SampleCache(tmp_path / "s.jsonl", {})
    done, failures = sample_all_multi(
        EQARewardModel(answer_value_judge(), num_keyframes=2),
        instances,
        EvalSettings(ks=(1,), batch_size=4),
        cache,
    )
    assert sorted(done) == [instances[0].question_id, instances[1].question_id]
    assert [f["question_id"] for f in failures] == [b.question_id for b in broken]
    assert "has another episode_path" in failures[0]["error"]
