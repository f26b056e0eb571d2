import json
import logging
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from habitat_eqarm.data import read_jsonl, write_jsonl
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.parsing import parse_response
from habitat_eqarm.testing.agent_toy import CPU, SMALL, format_target
from habitat_eqarm.training.agent_grpo import (
    NO_ANSWER,
    REVISION_ROWS,
    RM_NO_SCORE,
    EQARMAgentReward,
    RewardModelError,
    answered,
    gt_match,
    make_rm_reward,
    prepare,
    step_seed,
    train_agent_grpo,
)
from habitat_eqarm.training.agent_grpo_config import AgentGRPOConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FAST = dict(
    num_generations=4,
    per_device_train_batch_size=4,
    max_completion_length=48,
    logging_steps=1,
    save_steps=1000,
    seed=0,
    rm_max_new_tokens=24,
    rm_device="cpu",
    learning_rate=1e-3,
)


def config(out, agent, data, rm, **kw) -> AgentGRPOConfig:
    fields = dict(output_dir=str(out), model_name_or_path=str(agent), data=str(data), rm_model=rm)
    return AgentGRPOConfig(**{**fields, **CPU, **SMALL, **FAST, **kw})


def test_config_checks_the_reward_model_options():
    ok = dict(output_dir="x", **CPU)
    assert AgentGRPOConfig(**ok).rm_backend == "hf"
    for bad, match in (
        (dict(rm_backend="vllm"), "rm_backend"),
        (dict(rm_backend="openai"), "rm_base_url"),
        (dict(rm_aggregate="max"), "rm_aggregate"),
        (dict(rm_k=0), "rm_k"),
        (dict(rm_weight=0.0, gt_weight=0.0), "not both 0"),
    ):
        with pytest.raises(ValueError, match=match):
            AgentGRPOConfig(**ok, **bad)


def test_questions_are_deduplicated_and_skipped_with_counts(tmp_path, tiny_model_path, toy_set):
    instances = read_jsonl(toy_set[0])[:6]  # 3 questions, two answers each
    instances[0].episode_path = str(tmp_path / "missing")  # its twin stands in for it
    instances[2].gt_answer = None
    data = write_jsonl(tmp_path / "d.jsonl", instances)
    cfg = config(tmp_path / "o", tiny_model_path, data, str(tiny_model_path))
    dataset, _, stats = prepare(cfg)
    assert (stats.instances, stats.kept, len(dataset)) == (6, 3, 3)
    assert (stats.skipped_no_frames, stats.skipped_duplicate, stats.without_gt_answer) == (1, 2, 1)
    row = dataset[0]
    assert len(row["images"]) == 3 and row["prompt"][0]["content"][0]["text"].startswith("You are")
    question = json.loads(row["instance"])
    assert question["predicted_answer"] is None and question["reasoning_steps"] == []
    assert json.loads((tmp_path / "o" / "agentgrpo_stats.json").read_text()) == stats.to_dict()


def test_gt_match_reads_the_parsed_answer():
    assert gt_match(format_target("the red one"), "red") == 1.0
    assert gt_match(format_target("blue"), "red") == 0.0
    assert gt_match("red", "red") == 0.0  # no <predicted_answer>: nothing to match
    assert gt_match(format_target("red"), "") is None


class CountingBackend:
    """The real backend, with each generate call's request count recorded."""

    def __init__(self, backend):
        self.inner, self.batches = backend, []
        self.name, self.model_id = backend.name, backend.model_id

    def generate(self, requests, params):
        self.batches.append(len(requests))
        return self.inner.generate(requests, params)

    def close(self):
        self.inner.close()


def toy_completions(questions):
    """Three parsable answers and one that is not, as TRL passes them (conversations)."""
    texts = [format_target(q.gt_answer) for q in questions[:3]] + ["I think it is red."]
    return [[{"role": "assistant", "content": t}] for t in texts]


def test_rm_reward_scores_a_step_in_one_call_and_gives_0_with_a_reason(
    tmp_path, rft_run, agent_toy, caplog
):
    questions = read_jsonl(agent_toy[0])[:4]
    for q in questions:
        q.keyframe_indices = [0, 4, 9]
    rows = [json.dumps(q.to_dict()) for q in questions]
    completions = toy_completions(questions)
    rm = EQARewardModel.from_pretrained(str(rft_run.output_dir), device="cpu", batch_size=8)
    counting = CountingBackend(rm.backend)
    rm = rm.with_backend(counting)
    greedy = dict(temperature=0.0, max_new_tokens=24)
    extra, metrics = {}, {}

    class State:
        global_step = 6

    reward = EQARMAgentReward(rm, seed=3, **greedy)
    with caplog.at_level(logging.INFO, logger="habitat_eqarm.training.agent_grpo"):
        got = reward(
            [None] * 4,
            completions,
            instance=rows,
            trainer_state=State(),
            log_metric=metrics.__setitem__,
            log_extra=extra.__setitem__,
        )
    assert counting.batches == [3] and reward.calls == 1  # the parsable three, one call
    assert got[3] == 0.0 and extra["reward_reason"][3] == NO_ANSWER
    assert "step 7, completion 3: reward 0 (no parsable <predicted_answer>)" in caplog.text
    assert metrics["agent/unparsable"] == 0.25
    # the same three instances scored directly: the reward is the score / 10, 0 when unscored
    expected = rm.score(
        [
            answered(r, parse_response(c[0]["content"]))
            for r, c in zip(rows[:3], completions[:3], strict=True)
        ],
        seed=step_seed(3, 7),
        **greedy,
    )
    for i, judgement in enumerate(expected):
        if judgement.score is None:
            assert got[i] == 0.0 and extra["reward_reason"][i] == RM_NO_SCORE
        else:
            assert got[i] == pytest.approx(judgement.score / 10) and extra["reward_reason"][i] == ""
    assert any(j.score is not None for j in expected)  # the RFT model writes the format

    one_each = EQARMAgentReward(rm, seed=3, batch=False, **greedy)
    counting.batches.clear()
    one_each([None] * 4, completions, instance=rows, trainer_state=State())
    assert counting.batches == [1, 1, 1] and one_each.calls == 3
    rm.close()


class FailingEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that is down (503) or too slow (sleeps past the timeout)."""

    hits = 0
    mode = "503"

    def do_POST(self):
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.mode == "slow":
            time.sleep(1.0)  # the client has given up by now: answer nothing
            return
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b'{"error": {"message": "overloaded"}}')

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("mode", ["503", "slow"])
def test_a_failing_rm_server_is_retried_then_names_the_step(synthetic_folder, mode):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FailingEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FailingEndpoint.hits, FailingEndpoint.mode = 0, mode
    url = f"http://127.0.0.1:{server.server_port}/v1"
    rm = EQARewardModel.from_pretrained(
        "eqa-rm", "openai", base_url=url, max_retries=2, backoff_base=0.01, timeout=0.2, cache=False
    )
    question = synthetic_folder[1][0]
    question.keyframe_indices = [0, 5]

    class State:
        global_step = 41

    reward = EQARMAgentReward(rm)
    try:
        with pytest.raises(RewardModelError, match=r"agent GRPO step 42: EQA-RM \(openai") as err:
            reward(
                [None],
                [format_target("red")],
                instance=[json.dumps(question.to_dict())],
                trainer_state=State(),
            )
    finally:
        server.shutdown()
        rm.close()
    assert FailingEndpoint.hits == 3  # the first try and two retries
    assert "giving up after 3 attempts" in str(err.value)
    assert ("HTTP 503 (overloaded)" if mode == "503" else "ReadTimeout") in str(err.value)


def test_rm_reward_through_eqarm_serve_retries_a_transient_failure(
    eqarm_server, synthetic_folder, monkeypatch
):
    monkeypatch.setenv("EQARM_TEST_SERVER_TOKEN", eqarm_server.token)
    served = eqarm_server.get("models")["data"][0]["id"]
    rm = EQARewardModel.from_pretrained(
        served,
        "openai",
        base_url=eqarm_server.base_url,
        api_key_env="EQARM_TEST_SERVER_TOKEN",
        backoff_base=0.01,
        cache=False,
    )
    question = synthetic_folder[1][0]
    question.keyframe_indices = [0, 5]
    rows = [json.dumps(question.to_dict())] * 3
    completions = [format_target("red"), format_target("blue"), "no answer here"]
    reward = EQARMAgentReward(rm, max_new_tokens=12)
    eqarm_server.set_faults("503:1")  # the first request fails, its retry succeeds
    extra = {}
    try:
        got = reward([None] * 3, completions, instance=rows, log_extra=extra.__setitem__)
    finally:
        eqarm_server.set_faults("")
        rm.close()
    # two parsable answers in one call: two concurrent requests, one of them retried once
    assert (rm.backend.stats["http_requests"], rm.backend.stats["retries"]) == (3, 1)
    assert len(got) == 3 and got[2] == 0.0 and extra["reward_reason"][2] == NO_ANSWER
    assert all(0.0 <= g <= 1.0 for g in got)


class Snapshot:
    """The model's parameters at the end of global step ``at`` (a TrainerCallback)."""

    def __init__(self, at):
        self.at, self.params = at, None

    def __getattr__(self, name):  # every other callback event: nothing to do
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.at:
            self.params = {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.slow
def test_agent_grpo_trains_against_eqa_rm_and_resumes_exactly(tmp_path, rft_run, agent_toy):
    questions, agent = agent_toy
    rm = str(rft_run.output_dir)
    train = dict(max_steps=3, save_steps=2, gt_weight=0.5)
    straight = config(tmp_path / "a", agent, questions, rm, **train)
    snapshots = [Snapshot(2), Snapshot(3)]
    first = train_agent_grpo(straight, snapshots)
    logged = [e for e in first.state.log_history if "reward" in e]
    assert [e["step"] for e in logged] == [1, 2, 3]
    # one batched call per step with a parsable answer (a step without one asks nothing)
    assert first.rm_reward.calls == sum(e["agent/unparsable"] < 1 for e in logged) > 0
    for key in ("rewards/rm_reward/mean", "rewards/gt_reward/mean", "agent/gt_accuracy"):
        assert all(0.0 <= e[key] <= 1.0 for e in logged), key
    assert any(e["rewards/rm_reward/mean"] > 0 for e in logged)  # EQA-RM really scored some
    reasons = set(first._logs["extra"]["reward_reason"])  # the completions table's column
    assert reasons <= {"", NO_ANSWER, RM_NO_SCORE} and len(reasons) > 1, reasons
    png = Path(straight.output_dir) / "agent_grpo_curves.png"
    assert png.read_bytes()[:4] == b"\x89PNG"

    resumed_dir = tmp_path / "b"
    resumed_dir.mkdir()
    shutil.copytree(Path(straight.output_dir) / "checkpoint-2", resumed_dir / "checkpoint-2")
    again = config(resumed_dir, agent, questions, rm, **train)
    resumed_step = Snapshot(3)
    trainer = train_agent_grpo(again, [resumed_step])
    assert trainer.state.global_step == 3 and trainer.rm_reward.calls == 1  # only step 3 ran

    def step3(t):
        entry = next(e for e in t.state.log_history if e.get("step") == 3 and "reward" in e)
        return entry["reward"], entry["completions/mean_length"], entry["num_tokens"]

    assert step3(trainer) == step3(first)  # same questions, same samples, same RM scores
    # same next update, up to float noise far below the update (as the C-GRPO resume test)
    before, after = snapshots[0].params, snapshots[1].params
    moved = sum((after[n] - before[n]).abs().sum().item() for n in after)
    apart = sum((resumed_step.params[n] - after[n]).abs().sum().item() for n in after)
    assert moved > 0 and apart < 0.01 * moved, (apart, moved)


@pytest.mark.slow
def test_train_agent_command(tmp_path, rft_run, agent_toy, capsys):
    from habitat_eqarm.cli.main import main

    questions, agent = agent_toy
    args = ["train", "agent", "--config", str(CONFIGS / "agent_grpo.yaml")]
    args += ["--model_name_or_path", str(agent), "--data", str(questions)]
    args += ["--rm_model", str(rft_run.output_dir), "--rm_device", "cpu"]
    args += ["--output_dir", str(tmp_path / "o"), "--max_steps", "1", "--model_init_kwargs", "{}"]
    args += ["--bf16", "false", "--use_cpu", "true", "--activation_checkpointing", "false"]
    args += ["--num_generations", "2", "--per_device_train_batch_size", "2"]
    args += ["--max_completion_length", "16", "--num_keyframes", "2", "--max_pixels", "20000"]
    args += ["--rm_max_new_tokens", "8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained 1 steps" in printed and "EQA-RM calls: " in printed
    assert (tmp_path / "o" / "agent_grpo_curves.png").is_file()


# -- mode revise: the revision turn of critique-guided answering as the prompt ----------------

REVISE = dict(mode="revise")


def test_config_checks_the_revise_options():
    ok = dict(output_dir="x", **CPU)
    assert AgentGRPOConfig(**ok).mode == "answer"
    assert AgentGRPOConfig(**ok, mode="revise", improvement_weight=0.5).improvement_weight == 0.5
    for bad, match in (
        (dict(mode="critique"), "mode must be"),
        (dict(improvement_weight=0.5), "needs mode revise"),
        (dict(mode="revise", improvement_weight=-1.0), "improvement_weight"),
        (dict(mode="revise", rm_weight=0.0, gt_weight=1.0), "rm_weight > 0"),
        (dict(mode="revise", first_answers=0), "first_answers"),
    ):
        with pytest.raises(ValueError, match=match):
            AgentGRPOConfig(**ok, **bad)


def four_questions(tmp_path, agent_toy):
    return write_jsonl(tmp_path / "q.jsonl", read_jsonl(agent_toy[0])[:4])


def test_revision_rows_hold_the_first_answer_and_its_critique_and_are_cached(
    tmp_path, rft_run, agent_toy
):
    data = four_questions(tmp_path, agent_toy)
    cfg = config(
        tmp_path / "o", agent_toy[1], data, str(rft_run.output_dir), **REVISE, first_answers=2
    )
    with pytest.raises(ValueError, match="must judge the first answers"):
        prepare(cfg)
    judge = make_rm_reward(cfg)
    dataset, _, stats = prepare(cfg, judge)
    assert stats.kept == 4 and len(dataset) > 0
    # every first answer gave a row or was counted, and EQA-RM judged them in one call
    assert len(dataset) + stats.skipped_no_first_answer + stats.skipped_no_first_score == 8
    assert judge.calls == 1
    for row in dataset:
        text = row["prompt"][-1]["content"][-1]["text"]
        assert "critiqued that response (score " in text
        assert f"Your earlier answer: {row['first_answer']}" in text
        assert row["first_critique"] in text and 0.0 <= row["first_reward"] <= 1.0
        assert f"{row['first_reward'] * 10:g} of 10" in text
        assert json.loads(row["instance"])["predicted_answer"] is None  # the question only
        assert len(row["images"]) == 3
    # a second preparation (a resumed run) revises the same first answers, judging nothing
    again = make_rm_reward(cfg, judge.reward_model)
    cached, _, stats2 = prepare(cfg, again)
    assert again.calls == 0 and stats2.to_dict() == stats.to_dict()
    keys = ("prompt", "first_answer", "first_reward", "first_critique")
    assert [[r[k] for k in keys] for r in cached] == [[r[k] for k in keys] for r in dataset]
    # rows made for another run are refused, naming the file
    other = config(
        tmp_path / "o", agent_toy[1], data, str(rft_run.output_dir), **REVISE, first_answers=1
    )
    with pytest.raises(ValueError, match=f"{REVISION_ROWS}: made for another run"):
        prepare(other, again)
    judge.reward_model.close()


@pytest.mark.slow
def test_revise_training_pays_the_revised_score_plus_the_improvement(tmp_path, rft_run, agent_toy):
    data = four_questions(tmp_path, agent_toy)
    cfg = config(
        tmp_path / "o",
        agent_toy[1],
        data,
        str(rft_run.output_dir),
        **REVISE,
        max_steps=2,
        improvement_weight=0.5,
    )
    trainer = train_agent_grpo(cfg)
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert [e["step"] for e in logged] == [1, 2]
    assert trainer.rm_reward.calls <= 2  # the revisions: one batched call a step at most
    # TRL logs float32 means of 4 values in [-1, 1]: 1e-5 is far above their rounding
    for e in logged:
        revised, first = e["rewards/rm_reward/mean"], e["revise/first_reward"]
        assert e["rewards/improvement/mean"] == pytest.approx(revised - first, abs=1e-5)
        assert e["revise/improvement"] == pytest.approx(revised - first, abs=1e-5)
        total = revised + 0.5 * (revised - first)
        assert e["reward"] == pytest.approx(total, abs=1e-5)
        assert -1.0 <= e["revise/gt_gain"] <= 1.0
    assert (tmp_path / "o" / "agent_grpo_curves.png").is_file()
