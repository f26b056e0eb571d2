"""`/v1/score` in process: the app scores with `EQARewardModel.score` through its batcher,
opening each episode once per request (a scripted backend stands in for the model)."""

import pytest
from starlette.testclient import TestClient

from habitat_eqarm.data import EpisodeMemory
from habitat_eqarm.rewards.backends.base import GenerationResult, RewardBackend
from habitat_eqarm.rewards.backends.chat_format import encode_frame
from habitat_eqarm.rewards.model import EQARewardModel, Judgement
from habitat_eqarm.serve import scoring as scoring_module
from habitat_eqarm.serve.app import ServerSettings, create_app

SERVED = "served-name"


class ScriptedBackend(RewardBackend):
    """Test double: sample i of every request is ``<score>i</score>`` behind a critique."""

    def __init__(self):
        self.model_id = SERVED
        self.calls = []  # (requests, k) of each sample() call

    def sample(self, requests, params):
        self.calls.append((len(requests), params.k))
        texts = [f"<critique>Seen.</critique><score>{i}</score>" for i in range(params.k)]
        return [GenerationResult(list(texts)) for _ in requests]


@pytest.fixture
def served(synthetic_folder):
    _, questions = synthetic_folder
    backend = ScriptedBackend()
    model = EQARewardModel(backend, num_keyframes=3)
    root = questions[0].episode_path
    settings = ServerSettings(SERVED, data_roots=[str(root)], max_wait_ms=50, close_model=False)
    with TestClient(create_app(model, settings)) as client:
        yield client, model, backend, questions


def test_score_is_the_models_score_and_opens_each_episode_once(served, monkeypatch):
    client, model, backend, questions = served
    instances = [q.to_dict() for q in questions[:3]]  # all of one episode
    opened = []
    real = EpisodeMemory.from_path
    monkeypatch.setattr(
        scoring_module.EpisodeMemory, "from_path", lambda path: opened.append(path) or real(path)
    )
    r = client.post("/v1/score", json={"instances": instances, "k": 2, "aggregate": "majority"})
    assert r.status_code == 200, r.text
    got = [Judgement.from_dict(j) for j in r.json()["judgements"]]
    assert len(opened) == 1 and backend.calls == [(3, 2)]  # one episode read, one batch

    memory = real(questions[0].episode_path)
    expected = model.score(questions[:3], k=2, aggregate="majority", memories=[memory] * 3)
    for served_judgement, direct in zip(got, expected, strict=True):
        assert served_judgement.samples == direct.samples
        assert served_judgement.score == direct.score
        assert served_judgement.keyframe_indices == direct.keyframe_indices
        assert (served_judgement.model, served_judgement.prompt_id) == (SERVED, direct.prompt_id)


def test_greedy_scoring_decodes_once_and_repeats(served, synthetic_folder):
    client, _, backend, questions = served
    memory, _ = synthetic_folder
    frames = [encode_frame(f, "png") for f in memory.frames([0, 1])]
    body = {"instances": [questions[0].to_dict()], "frames": [frames], "k": 3, "temperature": 0}
    r = client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    (judgement,) = r.json()["judgements"]
    assert backend.calls == [(1, 1)] and judgement["n_valid"] == 3
    assert judgement["keyframe_indices"] == [0, 1]


def test_unreadable_keyframes_are_a_client_error(served):
    client, _, _, questions = served
    instance = {**questions[0].to_dict(), "keyframe_indices": [10_000]}
    r = client.post("/v1/score", json={"instances": [instance]})
    assert r.status_code == 400 and "out of range" in r.json()["error"]["message"], r.text
