import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from habitat_eqarm.rewards.parsing import aggregate_scores, parse_evaluation, score_spread


@pytest.mark.parametrize(
    ("text", "critique", "score"),
    [
        ("<critique>Grounded and right.</critique><score>8</score>", "Grounded and right.", 8),
        ("  \n<critique>ok</critique>\n  <score> 10 </score>\n", "ok", 10),
        ("<critique>multi\nline</critique><score>0</score>", "multi\nline", 0),
    ],
)
def test_well_formed(text, critique, score):
    parsed = parse_evaluation(text)
    assert parsed.format_ok and parsed.score == score and parsed.critique == critique


@pytest.mark.parametrize(
    ("text", "lenient"),
    [
        ("<critique>   </critique><score>7</score>", 7),  # empty critique
        ("<critique>x</critique><score>7.5</score>", None),
        ("<critique>x</critique><score>11</score>", None),
        ("<critique>x</critique><score>-1</score>", None),
        ("<critique>x</critique><score>7</score><score>7</score>", 7),  # two blocks, same value
        ("<critique>x</critique><score>7</score><score>3</score>", None),  # two values
        ("<score>6</score><critique>x</critique>", 6),  # wrong order
        ("<critique>x</critique><score>6", None),  # missing closing tag, no phrase either
        ("<critique>x<score>5</score>", 5),  # unclosed critique
        ("<critique>x</critique><score>4</score> I hope that helps", 4),  # text after
        ("The answer is fine. Score: 9", 9),
        ("overall SCORE 3/10", 3),
        ("score: 7.5", None),
        ("Score: 12", None),
        ("<critique>a</critique><critique>b</critique><score>5</score>", 5),  # two critiques
        ("<critique>a <score>2</score></critique><score>5</score>", None),
        ("\u202e\U0001f4a9<critique>\x00</critique>\udcff<score>\u0667</score>", None),
        ("<critique>x</critique><score>\u0667</score>", None),  # Arabic-Indic 7 is no integer
        ("", None),
    ],
)
def test_malformed_gets_lenient_score(text, lenient):
    parsed = parse_evaluation(text)
    assert not parsed.format_ok
    assert parsed.score == lenient


def test_critique_is_kept_from_malformed_output():
    parsed = parse_evaluation("<critique>Sofa is grey.</critique> Score: 6")
    assert parsed == parse_evaluation("<critique>Sofa is grey.</critique> Score: 6")
    assert (parsed.critique, parsed.score, parsed.format_ok) == ("Sofa is grey.", 6, False)


def test_a_megabyte_of_text_does_not_hang():
    junk = "<critique>" + "a<" * 500_000 + "score: 3"
    parsed = parse_evaluation(junk)
    assert not parsed.format_ok and parsed.score == 3
    big = "<critique>" + "x" * 1_000_000 + "</critique><score>9</score>"
    assert parse_evaluation(big).format_ok


def test_non_string_input():
    assert parse_evaluation(None).score is None  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(
    st.text()
    | st.lists(
        st.sampled_from(["<critique>", "</critique>", "<score>", "</score>", "7", "11", " ", "x"])
        | st.text(max_size=5),
        max_size=12,
    ).map("".join)
)
def test_never_raises_and_format_ok_implies_a_valid_score(text):
    parsed = parse_evaluation(text)
    if parsed.format_ok:
        assert parsed.score is not None and 0 <= parsed.score <= 10 and parsed.critique
    assert parsed.score is None or 0 <= parsed.score <= 10


@pytest.mark.parametrize(
    ("scores", "method", "expected"),
    [
        ([7, 8, None, 9], "mean", 8.0),
        ([7, 7, 3, None], "majority", 7.0),
        ([7, 7, 3, 3, 5], "majority", 5.0),  # tie between 7 and 3 -> their mean
        ([1, 9, 5, None, None], "median", 5.0),
        ([2, 4], "median", 3.0),
        ([None, None], "mean", None),
        ([], "majority", None),
    ],
)
def test_aggregate_scores(scores, method, expected):
    assert aggregate_scores(scores, method) == expected


def test_unknown_aggregate():
    with pytest.raises(ValueError, match="unknown aggregate 'vote'"):
        aggregate_scores([1], "vote")


def test_spread_is_zero_when_the_votes_agree_and_drops_unparsable_ones():
    assert score_spread([7, 7, None, 7]) == 0.0
    assert score_spread([0, 10]) == 5.0  # the widest two votes can disagree
    # population std of 2, 4, 4, 4, 5, 5, 7, 9 is exactly 2
    assert score_spread([2, 4, 4, 4, 5, 5, 7, 9, None]) == 2.0
    assert score_spread([None, None]) is None and score_spread([]) is None
