"""The test-only fault plan, and the server flag without which it does not exist."""

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


def _client(scripted_backend, **settings):
    from starlette.testclient import TestClient

    from habitat_eqarm.rewards.model import EQARewardModel
    from habitat_eqarm.serve.app import ServerSettings, create_app

    model = EQARewardModel(scripted_backend(), num_keyframes=1)
    return TestClient(create_app(model, ServerSettings("m", close_model=False, **settings)))


def test_without_the_test_flag_there_is_no_fault_route_and_no_plan(scripted_backend):
    with _client(scripted_backend) as client:
        assert client.post("/admin/faults", json={"spec": "500:1"}).status_code == 404
        assert "faults" not in client.get("/v1/stats").json()
    with pytest.raises(ValueError, match="needs test_faults=True"):
        _client(scripted_backend, faults="500:1")


def test_with_the_test_flag_the_route_sets_the_plan_and_work_requests_fail(scripted_backend):
    with _client(scripted_backend, test_faults=True, faults="503:1") as client:
        assert client.get("/v1/stats").json()["faults"]["pending"] == [{"status": 503, "count": 1}]
        assert client.post("/v1/score", json={"instances": []}).status_code == 503
        assert client.post("/admin/faults", json={"spec": "429:2"}).json()["pending"] == [
            {"status": 429, "count": 2}
        ]
        assert client.get("/health").status_code == 200  # never failed
        assert client.post("/v1/score", json={"instances": []}).status_code == 429
        assert client.get("/v1/stats").json()["faults"]["injected"] == 1  # since the new plan
