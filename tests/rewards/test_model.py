import pytest

from habitat_eqarm.data import EQAInstance, load_openeqa
from habitat_eqarm.rewards.model import EQARewardModel, Judgement, judgement_from_texts

TEXTS = [
    "<critique>Grounded.</critique><score>8</score>",
    "<critique>Fine.</critique><score>6</score>",
    "Score: 9",  # malformed: no score for rewards, even though one could be guessed
    "<critique>Good.</critique><score>8</score>",
]
INSTANCE = EQAInstance(question_id="q", question="?")


def test_judgement_from_texts_uses_strict_scores_only():
    j = judgement_from_texts(INSTANCE, TEXTS, aggregate="majority", prompt_id="p", model="m")
    assert j.scores == [8, 6, None, 8] and j.n_valid == 3 and j.score == 8.0
    assert j.critiques[2] is None and j.samples[2].text == "Score: 9"
    assert j.prefix(2).score == 7.0 and j.prefix(2).n_valid == 2  # majority tie -> mean
    assert Judgement.from_dict(j.to_dict()) == j
    # votes 8, 6, 8: population std sqrt(8/9); eqarm serve's extra keys read back too
    assert j.spread == pytest.approx((8 / 9) ** 0.5, abs=1e-12)
    assert Judgement.from_dict({**j.to_dict(), "spread": j.spread, "cached": True}) == j


@pytest.fixture(scope="module")
def reward_model(tiny_model_path):
    return EQARewardModel.from_pretrained(str(tiny_model_path), batch_size=3)


@pytest.fixture(scope="module")
def demo_instances(openeqa_dir):
    instances = load_openeqa(openeqa_dir / "open-eqa-demo-data.json", data_root=openeqa_dir)
    for inst in instances:
        inst.predicted_answer = inst.gt_answer
        inst.reasoning_steps = ["I walk through the home.", "I check each room."]
    return instances


def test_score_real_demo_episode_with_tiny_model(reward_model, demo_instances):
    judgements = reward_model.score(demo_instances, k=4, seed=0, max_new_tokens=16)
    assert [j.question_id for j in judgements] == [i.question_id for i in demo_instances]
    for j in judgements:
        assert len(j.samples) == 4 and j.prompt_id == "eqarm-rm-v1"
        assert j.keyframe_indices == [0, 42, 84, 125, 167]
        assert j.model == reward_model.name
        # an untrained model writes no well-formed evaluation: no score, and it says so
        assert j.n_valid == sum(s.format_ok for s in j.samples)
        assert (j.score is None) == (j.n_valid == 0)
        assert {"frames_s", "preprocess_s", "generate_s"} <= set(j.timings)
    again = reward_model.score(demo_instances, k=4, seed=0, max_new_tokens=16)
    assert [j.samples for j in again] == [j.samples for j in judgements]


def test_given_keyframes_and_memories_are_used(reward_model, demo_instances):
    from habitat_eqarm.data.synthetic import make_synthetic_episode

    memory, questions = make_synthetic_episode(seed=1)
    questions[0].keyframe_indices = [3, 9]
    (j,) = reward_model.score(questions[:1], memories=[memory], temperature=0, max_new_tokens=4)
    assert j.keyframe_indices == [3, 9]


def test_video_frames_mode(tiny_model_path, demo_instances):
    model = EQARewardModel.from_pretrained(str(tiny_model_path), frames_as="video")
    (j,) = model.score(demo_instances[:1], k=2, temperature=0, max_new_tokens=4)
    assert len(j.samples) == 2


def test_bad_arguments(reward_model):
    with pytest.raises(ValueError, match="no episode_path"):
        reward_model.score([INSTANCE])
    with pytest.raises(ValueError, match="k must be at least 1"):
        reward_model.score([INSTANCE], k=0)
    with pytest.raises(ValueError, match="unknown aggregate"):
        reward_model.score([INSTANCE], aggregate="vote")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        EQARewardModel.from_pretrained("x", backend="nope")
    with pytest.raises(ValueError, match="frames_as"):
        EQARewardModel(reward_model.backend, frames_as="gif")
