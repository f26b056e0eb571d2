"""The one "call the batch, on failure each item alone" loop: a bad item costs only itself."""

from __future__ import annotations

from habitat_eqarm.rewards.batching import batch_or_each


def squares_unless_negative(calls):
    def call(items):
        calls.append(list(items))
        bad = [x for x in items if x < 0]
        if bad:
            raise ValueError(f"item {bad[0]}: negative")
        return [x * x for x in items]

    return call


def test_a_good_batch_is_one_call():
    calls = []
    assert batch_or_each(squares_unless_negative(calls), (1, 2, 3)) == [1, 4, 9]
    assert calls == [[1, 2, 3]]


def test_a_failing_batch_is_retried_item_by_item_and_the_bad_item_holds_its_error():
    calls = []
    results = batch_or_each(squares_unless_negative(calls), [2, -1, 3, -5])
    assert calls == [[2, -1, 3, -5], [2], [-1], [3], [-5]]
    assert results[0] == 4 and results[2] == 9
    assert [str(results[i]) for i in (1, 3)] == ["item -1: negative", "item -5: negative"]
    assert all(isinstance(results[i], ValueError) for i in (1, 3))


def test_a_single_failing_item_is_called_once():
    calls = []
    (result,) = batch_or_each(squares_unless_negative(calls), [-2])
    assert isinstance(result, ValueError) and calls == [[-2]]
