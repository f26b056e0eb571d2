import pytest

from habitat_eqarm.rewards.textmatch import answers_match, critique_leak


@pytest.mark.parametrize(
    ("predicted", "reference", "expected"),
    [
        ("There are 8 chairs.", "Eight chairs", True),
        ("eight", "Eight chairs", True),
        ("six chairs", "Eight chairs", False),
        ("The bedroom", "Bedroom", True),
        ("the living room", "Bedroom", False),
        ("Keep walking straight, don't turn", "Don't turn. Keep walking straight.", True),
        ("Turn left", "Don't turn. Keep walking straight.", False),
        ("", "Bedroom", False),
    ],
)
def test_answers_match(predicted, reference, expected):
    assert answers_match(predicted, [reference]) is expected


def test_extra_answers_count_as_references():
    assert answers_match("in the gym", ["Bedroom", "the gym"])


def test_critique_leaks_are_flagged_with_a_reason():
    assert "8" in critique_leak("I can see eight chairs.", "Eight chairs", "six chairs")
    assert "reference answer" in critique_leak("Unlike the reference answer, ...", "x", "y")
    assert critique_leak("The count is not supported by the views.", "Eight chairs", "six") is None
    # words the response used itself may appear: discussing its own claim is no leak
    assert critique_leak("The bedroom is visible near the end.", "Bedroom", "bedroom") is None
