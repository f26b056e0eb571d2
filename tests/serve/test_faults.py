import pytest

from habitat_eqarm.serve.faults import FaultPlan


def test_counted_faults_come_in_order_then_stop():
    plan = FaultPlan.parse("429:2, 500:1")
    assert [plan.next_status() for _ in range(5)] == [429, 429, 500, None, None]
    assert plan.to_dict() == {"pending": [], "rates": [], "injected": 3}


def test_rates_are_seeded():
    a, b = FaultPlan.parse("503:0.3", seed=1), FaultPlan.parse("503:0.3", seed=1)
    seq_a = [a.next_status() for _ in range(200)]
    assert seq_a == [b.next_status() for _ in range(200)]
    assert set(seq_a) == {None, 503} and 30 < seq_a.count(503) < 90


def test_an_empty_plan_injects_nothing():
    assert FaultPlan.parse("").next_status() is None


@pytest.mark.parametrize("spec", ["429", "abc:1", "200:1", "500:0", "500:1.5", "500:-1"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ValueError, match="fault"):
        FaultPlan.parse(spec)
