"""The TRL, verl and OpenRLHF adapters against a real `eqarm serve` (tiny model, loopback).

TRL installs here, so its reward function runs inside a real ``GRPOTrainer``'s own
reward-gathering code (``_calculate_rewards``, which awaits async reward functions on TRL's
event loop) and through ``AsyncGRPOTrainer``'s rollout-worker scoring (``_score_group``).
verl and OpenRLHF do not install cleanly on this CPU machine (CUDA-only wheels and
pins that conflict with ours), so those adapters are exercised through their documented
interfaces instead: verl's reward-loop call ``await compute_score(data_source, solution_str,
ground_truth, extra_info, **reward_kwargs)`` and OpenRLHF's remote-RM wire format (a JSON POST
of ``query``, ``prompts``, ``labels`` answered with ``rewards``, ``scores``, ``extra_logs``).

What each test proves: the adapter sent the server exactly the instance and options it should
(a direct ``/v1/score`` request with them is then a memo hit and carries the same judgement),
and turned the judgement into the framework's reward.
"""

import asyncio
import json
import pickle

import httpx
import pytest

from habitat_eqarm.data.episode_ref import EpisodeRef, EpisodeRefError, EpisodeStore, embed_ref
from habitat_eqarm.integrations import openrlhf, verl
from habitat_eqarm.integrations.trl import EQARMRemoteReward
from habitat_eqarm.serve.scoring import OPENRLHF_OPTIONS

pytestmark = pytest.mark.slow  # shares the session's server subprocess

GOOD = "<reasoning_trace><think>I walked past the sofa.</think></reasoning_trace>"
GOOD += "<predicted_answer>a red chair</predicted_answer>"


@pytest.fixture
def server(eqarm_server, monkeypatch):
    monkeypatch.setenv("EQARM_SERVE_TOKEN", eqarm_server.token)
    return eqarm_server


def ref_of(question, **extra):
    return EpisodeRef(question.question, question.question_id, question.episode_id, **extra)


TOKENS = 24  # critique tokens per sample: enough to exercise decoding, quick on the tiny model


def direct(server, ref, k, seed, tokens=TOKENS, answer="a red chair"):
    """What the server itself says about the same instance (a memo hit if the adapter asked)."""
    instance = {
        "question_id": ref.question_id,
        "question": ref.question,
        "episode_id": ref.episode_id or "",
        "predicted_answer": answer,
        "reasoning_steps": ["I walked past the sofa."],
        "keyframe_indices": list(ref.keyframe_indices),
    }
    body = {"instances": [instance], "k": k, "seed": seed, "temperature": 0.8, "top_p": 0.9}
    body["max_new_tokens"] = tokens
    if ref.frames_hash:
        body["frames_hash"] = [ref.frames_hash]
    r = server.post("score", body)
    assert r.status_code == 200, r.text
    return r.json()["judgements"][0]


def reward_of(judgement):
    return 0.0 if judgement["score"] is None else judgement["score"] / 10


def test_trl_reward_inside_a_real_grpo_trainer(server, tiny_model_path, synthetic_folder, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    _, questions = synthetic_folder
    column_ref, tag_ref = ref_of(questions[0], keyframe_indices=[0, 3]), ref_of(questions[1])
    reward = pickle.loads(
        pickle.dumps(EQARMRemoteReward(server.base_url, k=2, seed=11, max_new_tokens=TOKENS))
    )
    rows = [
        {"prompt": "Answer about the house.", "eqarm_ref": column_ref.to_json()},
        {"prompt": embed_ref("Answer about the house.", tag_ref), "eqarm_ref": None},
    ]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=4,
        report_to=[],
        use_cpu=True,
    )
    trainer = GRPOTrainer(
        model=str(tiny_model_path),
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    assert trainer.reward_func_names == ["eqarm_remote_reward"]
    completions = [GOOD, "I do not know"]
    got = trainer._calculate_rewards(rows, [r["prompt"] for r in rows], completions, [[1], [2]])
    first = direct(server, column_ref, k=2, seed=11)
    assert first["cached"] is True and len(first["samples"]) == 2
    assert got[0, 0].item() == pytest.approx(reward_of(first), abs=1e-6)  # float32 tensor
    assert got[1, 0].item() == 0.0  # no readable answer: never sent, no_answer_reward
    tagged = trainer._calculate_rewards(
        rows[::-1], [r["prompt"] for r in rows[::-1]], [GOOD, GOOD], [[1], [2]]
    )
    assert direct(server, tag_ref, k=2, seed=11)["cached"] is True
    assert tagged[1, 0].item() == pytest.approx(got[0, 0].item(), abs=1e-6)  # memo: same judgement


def test_trl_reward_in_async_grpo_rollout_scoring(server, synthetic_folder):
    """AsyncGRPOTrainer's rollout worker (a spawned process: the reward arrives pickled)
    scores a group with ``_score_group``; only its attributes are set here, no vLLM."""
    from types import SimpleNamespace

    from accelerate import PartialState
    from trl.experimental.async_grpo import async_rollout_worker as rollout

    PartialState()  # the worker logs through accelerate, which its process sets up

    _, questions = synthetic_folder
    ref = ref_of(questions[5])
    reward = pickle.loads(
        pickle.dumps(EQARMRemoteReward(server.base_url, k=2, seed=13, max_new_tokens=TOKENS))
    )
    worker = SimpleNamespace(
        reward_funcs=[reward],
        reward_func_names=["eqarm_remote_reward"],
        _env_reward_types=[],
        _provides_rollout_reward=False,
    )
    prompt = [{"role": "user", "content": embed_ref("Answer about the house.", ref)}]
    completions = [
        [{"role": "assistant", "content": GOOD}],
        [{"role": "assistant", "content": "?"}],
    ]
    sequence = rollout.TrainingSequence([1, 2, 3], [0, 1, 1], [0.0, -1.0, -1.0], "r")
    group = rollout.RolloutGroup(
        prompts=[prompt, prompt],
        reward_kwargs={},
        completions=completions,
        completions_ids=[[2, 3], [2, 3]],
        completions_sequences=[[sequence], [sequence]],
        tool_call_counts=[0, 0],
        tool_failure_counts=[0, 0],
        model_version=0,
        group_id=0,
        env_rewards=[None, None],
        rollout_rewards=[None, None],
    )
    samples = asyncio.run(rollout._AsyncRolloutLoop._score_group(worker, group))
    judgement = direct(server, ref, k=2, seed=13)
    assert judgement["cached"] is True
    got = [s.metrics["rewards/eqarm_remote_reward"] for s in samples]
    assert got == [pytest.approx(reward_of(judgement), abs=1e-12), 0.0]


def test_trl_reward_needs_a_reference():
    reward = EQARMRemoteReward("http://127.0.0.1:9/v1")
    with pytest.raises(EpisodeRefError, match="row 0: no 'eqarm_ref' column"):
        asyncio.run(reward(["plain prompt"], [GOOD]))


def test_verl_compute_score_in_its_reward_loop_signature(server, synthetic_folder):
    memory, questions = synthetic_folder
    store = EpisodeStore(server.episode_store)
    by_hash = EpisodeRef(
        questions[2].question, "q-hash", frames_hash=store.put_frames(memory.frames([4, 8]))
    )
    by_id = ref_of(questions[3])
    kwargs = {"server_url": server.base_url, "k": 3, "seed": 5, "max_new_tokens": TOKENS}
    kwargs["reward_router_address"] = "ignored"  # verl adds keys of its own
    out = asyncio.run(
        verl.compute_score("eqarm", GOOD, None, {"eqarm_ref": by_hash.to_json()}, **kwargs)
    )
    judgement = direct(server, by_hash, k=3, seed=5)
    assert judgement["cached"] is True and judgement["keyframe_indices"] == [0, 1]
    assert out == {
        "score": pytest.approx(reward_of(judgement), abs=1e-12),
        "eqarm_score": judgement["score"],
        "spread": judgement["spread"],
        "cached": False,
        "answer_found": True,
    }
    tagged = asyncio.run(verl.compute_score("eqarm", embed_ref(GOOD, by_id), "", None, **kwargs))
    assert direct(server, by_id, k=3, seed=5)["cached"] is True and tagged["answer_found"]
    with pytest.raises(EpisodeRefError, match="extra_info\\['eqarm_ref'\\]"):
        asyncio.run(verl.compute_score("eqarm", GOOD, None, {}, **kwargs))


def test_openrlhf_wire_format(server, synthetic_folder):
    _, questions = synthetic_folder
    ref = ref_of(questions[4], keyframe_indices=[1, 2, 5])
    prompt = embed_ref("<|im_start|>user\nAnswer about the house.", ref)
    body = {
        "query": [prompt + GOOD, prompt + "no idea"],
        "prompts": [prompt] * 2,
        "labels": ["", ""],
    }
    url = openrlhf.remote_url(server.base_url)
    assert url.endswith("/v1/openrlhf")
    # OpenRLHF's client: a JSON POST with no other fields (the token header is ours)
    r = httpx.post(
        url,
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **server.headers},
        # httpx's default is 5 s; K = 4 critiques of up to 512 tokens from the tiny model on a
        # loaded 2-core machine took longer (a fresh-clone run timed out here)
        timeout=300,
    )
    assert r.status_code == 200, r.text
    data = r.json()
    options = OPENRLHF_OPTIONS
    judgement = direct(server, ref, k=options["k"], seed=options["seed"], tokens=512)
    assert judgement["cached"] is True and judgement["keyframe_indices"] == [1, 2, 5]
    assert data["rewards"] == data["scores"] == [pytest.approx(reward_of(judgement)), 0.0]
    assert data["extra_logs"]["eqarm_spread"] == [judgement["spread"], None]
    assert data["extra_logs"]["eqarm_answer_found"] == [True, False]


@pytest.fixture
def scripted_url(synthetic_folder, scripted_backend, tmp_path):
    """An in-process server over HTTP whose model scores K samples 0..K-1 (mean (K-1)/2)."""
    from habitat_eqarm.rewards.model import EQARewardModel
    from habitat_eqarm.serve.app import ServerSettings, create_app
    from habitat_eqarm.testing.server import app_server

    _, questions = synthetic_folder
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "seed0").symlink_to(questions[0].episode_path)
    model = EQARewardModel(scripted_backend(), num_keyframes=3)
    settings = ServerSettings("scripted", episode_store=str(tmp_path), max_wait_ms=1)
    with app_server(create_app(model, settings)) as url:
        yield url


@pytest.mark.parametrize("k", [2, 5])
def test_rewards_are_the_aggregate_over_ten(scripted_url, synthetic_folder, k):
    _, questions = synthetic_folder
    ref = ref_of(questions[0])
    reward = EQARMRemoteReward(scripted_url, k=k, token_env=None)
    got = asyncio.run(reward([embed_ref("p", ref)] * 2, [GOOD, "no answer"]))
    assert got == [pytest.approx((k - 1) / 2 / 10, abs=1e-12), 0.0]
    out = asyncio.run(
        verl.compute_score(
            "eqarm", GOOD, None, {"eqarm_ref": ref.to_json()}, server_url=scripted_url, k=k
        )
    )
    assert out["score"] == pytest.approx((k - 1) / 20, abs=1e-12) and out["cached"] is True
    spread = (sum((i - (k - 1) / 2) ** 2 for i in range(k)) / k) ** 0.5
    assert out["spread"] == pytest.approx(spread, abs=1e-12)
