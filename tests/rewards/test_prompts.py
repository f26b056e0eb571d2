import pytest

from habitat_eqarm.data import EQAInstance
from habitat_eqarm.rewards.prompts import (
    GENERATOR_PROMPT,
    JUDGE_PROMPT,
    PROMPTS,
    REWARD_MODEL_PROMPT,
    build_messages,
    prompt_text,
)

INSTANCE = EQAInstance(
    question_id="q",
    question="What colour is the sofa?",
    gt_answer="Dark green velvet",
    predicted_answer="Grey",
    reasoning_steps=["I look for a sofa.", "Later I see a grey sofa."],
)


def test_prompt_ids_are_unique_and_versioned():
    assert len(PROMPTS) == 3
    assert all(pid.endswith("-v1") for pid in PROMPTS)


def test_reward_model_prompt_never_sees_the_ground_truth():
    text = prompt_text(REWARD_MODEL_PROMPT, INSTANCE)
    assert "Dark green velvet" not in text
    assert "What colour is the sofa?" in text and "Predicted answer: Grey" in text
    assert "Step 1: I look for a sofa.\nStep 2: Later I see a grey sofa." in text
    assert "<critique>" in text and "<score>" in text and "60%" in text and "40%" in text


def test_judge_prompt_sees_the_ground_truth_and_forbids_revealing_it():
    text = prompt_text(JUDGE_PROMPT, INSTANCE)
    assert "Reference answer (for grading only): Dark green velvet" in text
    assert "never state or hint at the" in text
    no_gt = EQAInstance(question_id="q2", question="?")
    with pytest.raises(ValueError, match="'q2': the judge prompt needs gt_answer"):
        prompt_text(JUDGE_PROMPT, no_gt)


def test_generator_prompt_and_wrong_answer_variant():
    plain = prompt_text(GENERATOR_PROMPT, INSTANCE)
    wrong = prompt_text(GENERATOR_PROMPT, INSTANCE, wrong_answer=True)
    assert "<reasoning_trace><think>" in plain and "<predicted_answer>" in plain
    assert "never by frame number" in plain
    assert "plausible but wrong answer" in wrong and "plausible but wrong" not in plain


def test_messages_put_frames_before_text():
    msgs = build_messages(REWARD_MODEL_PROMPT, INSTANCE, 5)
    assert [m["role"] for m in msgs] == ["system", "user"]
    kinds = [part["type"] for part in msgs[1]["content"]]
    assert kinds == ["image"] * 5 + ["text"]
    video = build_messages(REWARD_MODEL_PROMPT, INSTANCE, 5, as_video=True)
    assert [part["type"] for part in video[1]["content"]] == ["video", "text"]
