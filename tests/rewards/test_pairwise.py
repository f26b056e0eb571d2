import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from habitat_eqarm.data import EQAInstance
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.pairwise import (
    INVALID_REASONS,
    PAIRWISE_PROMPT,
    PairJudgement,
    ResponsePair,
    pair_judgement_from_texts,
    parse_verdict,
)


@pytest.mark.parametrize(
    ("text", "winner"),
    [
        ("<critique>A sees the sofa.</critique><verdict>A</verdict>", "A"),
        ("\n <critique>B is grounded.</critique>\n<verdict> B </verdict>\n", "B"),
    ],
)
def test_well_formed_verdicts(text, winner):
    parsed = parse_verdict(text)
    assert parsed.format_ok and parsed.winner == winner and parsed.reason is None
    assert parsed.critique and "<" not in parsed.critique


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<critique>x</critique>", "no verdict"),
        ("A is better.", "no verdict"),
        ("<critique>x</critique><verdict>A</verdict><verdict>B</verdict>", "several verdicts"),
        ("<critique>x</critique><verdict>C</verdict>", "verdict names no response"),
        ("<critique>x</critique><verdict></verdict>", "verdict names no response"),
        ("<critique>x</critique><verdict>neither</verdict>", "verdict names no response"),
        ("<critique>x</critique><verdict>A and B</verdict>", "verdict names both responses"),
        ("<critique>x</critique><verdict>AB</verdict>", "verdict names both responses"),
        ("<critique>x</critique><verdict>both</verdict>", "verdict names both responses"),
        ("<critique>x</critique><verdict>tie</verdict>", "verdict names both responses"),
        ("<critique>x</critique><verdict>Response A</verdict>", "verdict is not exactly A or B"),
        ("<critique>x</critique><verdict>a</verdict>", "verdict names no response"),
        ("<critique> </critique><verdict>A</verdict>", "no critique"),
        ("<verdict>A</verdict>", "no critique"),
        ("<critique>a</critique><critique>b</critique><verdict>A</verdict>", "several critiques"),
        ("<critique>a <critique>b</critique></critique><verdict>A</verdict>", "no critique"),
        ("<critique>a <verdict>B</verdict></critique><verdict>A</verdict>", "several verdicts"),
        ("<critique>x</critique><verdict>A</verdict> Hope that helps", "text outside the blocks"),
        ("<verdict>A</verdict><critique>x</critique>", "text outside the blocks"),
        (None, "not text"),
    ],
)
def test_invalid_verdicts_say_why(text, reason):
    parsed = parse_verdict(text)
    assert not parsed.format_ok and parsed.winner is None and parsed.reason == reason


@settings(max_examples=400, deadline=None)
@given(
    st.text()
    | st.lists(
        st.sampled_from(
            ["<critique>", "</critique>", "<verdict>", "</verdict>", "A", "B", "AB", " ", "x"]
        )
        | st.text(max_size=5),
        max_size=12,
    ).map("".join)
)
def test_verdict_parser_never_raises_and_invalid_means_no_winner(text):
    parsed = parse_verdict(text)
    assert parsed.format_ok == (parsed.reason is None)
    if parsed.format_ok:
        assert parsed.winner in ("A", "B") and parsed.critique
    else:
        assert parsed.winner is None and parsed.reason in INVALID_REASONS


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1).filter(lambda t: "<" not in t and t.strip()),
    st.sampled_from("AB"),
    st.sampled_from(["", " ", "\n", "\t "]),
)
def test_every_well_formed_verdict_is_read(critique, letter, space):
    text = f"{space}<critique>{critique}</critique>{space}<verdict>{space}{letter}</verdict>"
    parsed = parse_verdict(text + space)
    assert parsed.format_ok and parsed.winner == letter and parsed.critique == critique.strip()


def _pair():
    a = EQAInstance(question_id="q#0", question="?", predicted_answer="sofa", gt_score=9)
    b = EQAInstance(question_id="q#1", question="?", predicted_answer="bed", gt_score=2)
    return ResponsePair(a, b)


def test_votes_map_positions_to_responses_in_each_order():
    ok = "<critique>x</critique><verdict>{}</verdict>"
    texts = {"AB": [ok.format("A"), "junk"], "BA": [ok.format("A"), ok.format("B")]}
    j = pair_judgement_from_texts(_pair(), texts, prompt_id="p", model="m")
    assert j.question_id == "q#0|q#1" == _pair().question_id
    assert j.votes("AB", 2) == ["q#0", None]  # A is the first response in (A, B)
    assert j.votes("BA", 2) == ["q#1", "q#0"]  # and the second in (B, A)
    assert j.invalid_reasons("AB", 2) == {"no verdict": 1}
    assert PairJudgement.from_dict(j.to_dict()) == j
    assert _pair().better == "q#0"
    tie = ResponsePair(_pair().first, dataclasses.replace(_pair().second, gt_score=9))
    assert tie.better is None


@pytest.fixture(scope="module")
def reward_model(tiny_model_path):
    return EQARewardModel.from_pretrained(str(tiny_model_path), batch_size=4)


def test_judge_pairs_asks_both_orders_over_the_same_frames(
    reward_model, synthetic_folder, record_requests
):
    _, questions = synthetic_folder
    a, b = (dataclasses.replace(questions[0], question_id=f"q#{n}") for n in range(2))
    a.predicted_answer, b.predicted_answer = "the red sofa", "a blue bed"
    seen = record_requests(reward_model)
    try:
        (j,) = reward_model.judge_pairs([ResponsePair(a, b)], k=3, seed=0, max_new_tokens=8)
    finally:
        del reward_model.backend.generate
    texts = [r.messages[1]["content"][-1]["text"] for r in seen]
    assert len(seen) == 2 and all(r.prompt_id == PAIRWISE_PROMPT.id for r in seen)
    assert texts[0].index("the red sofa") < texts[0].index("a blue bed")  # (A, B)
    assert texts[1].index("a blue bed") < texts[1].index("the red sofa")  # (B, A)
    assert (seen[0].frames == seen[1].frames).all() and len(seen[0].frames) == 5
    assert len(j.samples["AB"]) == len(j.samples["BA"]) == 3 and j.keyframe_indices
    for sample in j.samples["AB"] + j.samples["BA"]:  # an untrained model: parsed, never raised
        assert sample.format_ok == (sample.reason is None)
    other = dataclasses.replace(b, episode_path="elsewhere")
    with pytest.raises(ValueError, match="episodes differ"):
        reward_model.judge_pairs([ResponsePair(a, other)], k=1, max_new_tokens=2)
