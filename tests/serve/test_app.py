"""`/v1/score` and `/v1/openrlhf` in process: the app scores with `EQARewardModel.score`
through its batchers, opening each episode once per request, memoizing seeded requests and
dealing requests to its replicas (a scripted backend stands in for the model)."""

import pytest
from starlette.testclient import TestClient

from habitat_eqarm.data import EpisodeMemory
from habitat_eqarm.data.episode_ref import EpisodeStore
from habitat_eqarm.integrations.openrlhf import prompt_with_ref
from habitat_eqarm.rewards.backends.chat_format import encode_frame
from habitat_eqarm.rewards.model import EQARewardModel, Judgement
from habitat_eqarm.serve import scoring as scoring_module
from habitat_eqarm.serve.app import ServerSettings, create_app


@pytest.fixture
def served(synthetic_folder, scripted_backend):
    _, questions = synthetic_folder
    backend = scripted_backend()
    model = EQARewardModel(backend, num_keyframes=3)
    root = questions[0].episode_path
    settings = ServerSettings(
        "served-name", data_roots=[str(root)], max_wait_ms=50, close_model=False
    )
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
        assert (served_judgement.model, served_judgement.prompt_id) == (
            "served-name",
            direct.prompt_id,
        )


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


@pytest.fixture
def served_store(synthetic_folder, tmp_path, scripted_backend):
    """Two scripted replicas behind one app whose episode store holds the synthetic episode."""
    _, questions = synthetic_folder
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "seed0").symlink_to(questions[0].episode_path)
    backends = [scripted_backend(), scripted_backend()]
    models = [EQARewardModel(b, num_keyframes=3) for b in backends]
    settings = ServerSettings(
        "served-name", episode_store=str(tmp_path), memo_size=8, max_wait_ms=1, close_model=False
    )
    with TestClient(create_app(models, settings)) as client:
        yield client, backends, questions, EpisodeStore(tmp_path)


def answered(question, answer="a chair"):
    return {**question.to_dict(), "episode_path": None, "predicted_answer": answer}


def test_spread_and_memo_seeded_repeats_cost_no_generation(served_store):
    client, backends, questions, _ = served_store
    body = {"instances": [answered(questions[0])], "k": 3, "seed": 7}
    first = client.post("/v1/score", json=body).json()["judgements"][0]
    # the scripted samples score 0, 1, 2: population std sqrt(2/3)
    assert first["score"] == 1.0 and first["spread"] == pytest.approx((2 / 3) ** 0.5, abs=1e-12)
    assert first["cached"] is False
    again = client.post("/v1/score", json=body).json()["judgements"][0]
    assert again == {**first, "cached": True}
    assert sum(len(b.calls) for b in backends) == 1  # the repeat never reached a backend
    changed = {**body, "instances": [answered(questions[0], "a table")]}
    assert client.post("/v1/score", json=changed).json()["judgements"][0]["cached"] is False
    unseeded = {**body, "seed": None}
    for _ in range(2):
        assert client.post("/v1/score", json=unseeded).json()["judgements"][0]["cached"] is False
    assert sum(len(b.calls) for b in backends) == 4
    assert client.get("/v1/stats").json()["memo"]["hits"] == 1


def test_requests_are_dealt_to_the_replicas_in_turn(served_store):
    client, backends, questions, _ = served_store
    for i in range(4):
        body = {"instances": [answered(questions[0], f"answer {i}")], "k": 2}
        assert client.post("/v1/score", json=body).status_code == 200
    assert [len(b.calls) for b in backends] == [2, 2]
    stats = client.get("/v1/stats").json()["batching"]
    assert stats["requests"] == 4 and [r["requests"] for r in stats["replicas"]] == [2, 2]
    assert client.get("/health").json()["replicas"] == 2


def test_store_resolves_episode_ids_and_frame_hashes(served_store, synthetic_folder):
    client, _, questions, store = served_store
    memory, _ = synthetic_folder
    by_id = client.post("/v1/score", json={"instances": [answered(questions[0])]})
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["judgements"][0]["keyframe_indices"] == memory.keyframes(3)
    digest = store.put_frames(memory.frames([5, 6]))
    body = {"instances": [answered(questions[1])], "frames_hash": [digest]}
    by_hash = client.post("/v1/score", json=body)
    assert by_hash.status_code == 200 and by_hash.json()["judgements"][0]["keyframe_indices"] == [
        0,
        1,
    ]
    missing = client.post("/v1/score", json={**body, "frames_hash": ["0" * 64]})
    assert missing.status_code == 400 and "not in the store" in missing.json()["error"]["message"]
    unknown = {**answered(questions[0]), "episode_id": "synthetic/seed9"}
    r = client.post("/v1/score", json={"instances": [unknown]})
    assert r.status_code == 400 and "'synthetic/seed9': not in the episode store" in r.text


def test_openrlhf_route_speaks_its_wire_format(served_store):
    client, backends, questions, _ = served_store
    q = questions[0]
    prompt = prompt_with_ref("<|im_start|>user\nAnswer about the house.", q)
    good = "<reasoning_trace><think>I saw it.</think></reasoning_trace>"
    good += "<predicted_answer>a chair</predicted_answer>"
    body = {
        "query": [prompt + good, prompt + "no idea"],
        "prompts": [prompt, prompt],
        "labels": ["", ""],
    }
    r = client.post("/v1/openrlhf", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["rewards"] == data["scores"] == [0.15, 0.0]  # mean of 0..3 is 1.5 -> 0.15
    logs = data["extra_logs"]
    assert logs["eqarm_answer_found"] == [True, False] and logs["eqarm_score"] == [1.5, None]
    assert sum(len(b.calls) for b in backends) == 1  # the unreadable answer was never sent
    assert client.post("/v1/openrlhf", json=body).json()["extra_logs"]["eqarm_cached"] == [
        True,
        False,
    ]
    bad = client.post("/v1/openrlhf", json={"query": ["no reference anywhere"]})
    assert bad.status_code == 400 and "no <eqarm_ref> tag" in bad.json()["error"]["message"]
