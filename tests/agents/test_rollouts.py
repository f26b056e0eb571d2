"""`eqarm rollouts`: env rollouts -> `bench judge` -> `train rft` -> the new RM scores them.

The three commands are the README's ("Train an agent against EQA-RM"), run as written with
the models swapped: the agent, judge and auxiliary evaluator are the scripted double of
conftest.py (well-formed answers, right on every other call; exact 9 / 2 judge scores; noisy
evaluator samples), RFT trains the real tiny Qwen2-VL for 3 CPU steps, and that model then
scores the rollouts. The tiny model also plays the agent in its own test, on the same code path.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from pathlib import Path

import numpy as np
import pytest

from habitat_eqarm.cli.main import main
from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.schema import read_jsonl
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.rewards.model import EQARewardModel

from .conftest import DOUBLE, WRONG

REPO = Path(__file__).resolve().parents[2]
EPISODIC = json.dumps({"questions": "synthetic", "mode": "episodic", "num_keyframes": 3})
CPU = ["--bf16", "false", "--use_cpu", "true", "--activation_checkpointing", "false"]
CPU += ["--report_to", "none", "--model_init_kwargs", "{}"]


def readme_commands(work: Path) -> dict[str, list[str]]:
    """The README's rollouts -> judge -> RFT commands by verb, paths moved under ``work``."""
    section = (REPO / "README.md").read_text().split("## Train an agent against EQA-RM", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    commands = {}
    for line in block.replace("\\\n", " ").splitlines():
        args = shlex.split(line)[1:]
        args = [str(work / a) if a.startswith("rollouts/") else a for a in args]
        args = [str(REPO / a) if a.startswith("configs/") else a for a in args]
        commands[" ".join(args[:2]) if args[0] in ("bench", "train") else args[0]] = args
    assert list(commands) == ["rollouts", "bench judge", "train rft"]
    return commands


def swap(args: list[str], model: str, new: str) -> list[str]:
    assert model in args, f"the README command no longer names {model}"
    return [new if a == model else a for a in args]


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    return readme_commands(tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def rollouts(commands, synthetic_answers):
    args = swap(commands["rollouts"], "Qwen/Qwen2-VL-2B-Instruct", str(synthetic_answers))
    assert main([*args, "--backend", DOUBLE]) == 0
    return Path(args[args.index("--out") + 1])


def test_rollouts_are_instances_with_their_recorded_episodes(rollouts):
    instances = read_jsonl(rollouts)
    assert len(instances) == 6 and len({i.question_id for i in instances}) == 6
    memory, questions = make_synthetic_episode()
    by_id = {q.question_id: q for q in questions}
    for inst in instances:
        question = by_id[inst.meta["rollout"]["env_question_id"]]
        assert inst.question_id == f"{question.question_id}#0"
        assert (inst.question, inst.gt_answer) == (question.question, question.gt_answer)
        assert inst.reasoning_steps[-1] == f"So the answer is {inst.predicted_answer}."
        recorded = EpisodeMemory.from_path(inst.episode_path)
        assert len(recorded) == 5 and inst.keyframe_indices == [0, 1, 2, 3, 4]
        # the frames the agent answered from, written losslessly
        np.testing.assert_array_equal(
            recorded.frames(inst.keyframe_indices), memory.frames(memory.keyframes(5))
        )
        generation = inst.meta["generation"]
        assert generation["format_ok"] and generation["usable"]
        assert generation["matches_gt"] == (inst.predicted_answer != WRONG)
        assert inst.meta["rollout"]["agent"]["prompt_id"] == "eqarm-gen-v1"
    assert sum(i.meta["generation"]["matches_gt"] for i in instances) == 3
    report = json.loads(rollouts.with_name(rollouts.name + ".report.json").read_text())
    assert report["done_now"] == 6 and report["skipped"] == 0


def test_rollouts_judged_then_rft_then_the_new_rm_scores_them(
    commands, rollouts, synthetic_answers, tiny_model_path
):
    args = swap(commands["bench judge"], "Qwen/Qwen2-VL-72B-Instruct", str(synthetic_answers))
    assert main([*args, "--backend", DOUBLE, "--max_attempts", "1"]) == 0
    judged = Path(args[args.index("--out") + 1])
    labelled = read_jsonl(judged)
    assert len(labelled) == 6
    for inst in labelled:
        assert inst.gt_score == (9 if inst.meta["generation"]["matches_gt"] else 2)

    args = [*commands["train rft"], "--model_name_or_path", str(tiny_model_path)]
    args += ["--evaluator", str(synthetic_answers), "--evaluator_backend", DOUBLE, "--n_rft", "4"]
    args += ["--max_steps", "3", "--max_pixels", "20000", "--learning_rate", "1e-3", *CPU]
    args += ["--save_steps", "100", "--per_device_train_batch_size", "2", "--logging_steps", "1"]
    assert main(args) == 0
    out = Path(args[args.index("--output_dir") + 1])
    stats = json.loads((out / "rft_stats.json").read_text())
    assert stats["instances"] == 6 and 0 < stats["kept"] < stats["candidates"] == 24

    with EQARewardModel.from_pretrained(str(out), max_pixels=20_000) as rm:
        judgements = rm.score(read_jsonl(rollouts), k=2, max_new_tokens=8, seed=0)
    assert [j.question_id for j in judgements] == [i.question_id for i in read_jsonl(rollouts)]
    assert all(len(j.samples) == 2 and j.keyframe_indices == [0, 1, 2, 3, 4] for j in judgements)


def test_a_users_policy_bad_episodes_skipped_and_reported(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_policies.py").write_text(
        textwrap.dedent(
            """
            from habitat_eqarm.envs.agents import ScriptedAgent

            class Flaky(ScriptedAgent):
                '''Episode 1 raises, episode 2 answers nothing, the others answer "red".'''

                def __init__(self, watch_frames):
                    super().__init__(lambda _, q: "" if self.episode == 2 else "red", watch_frames)
                    self.episode = -1

                def reset(self):
                    self.episode += 1

                def act(self, obs, info=None):
                    if self.episode == 1:
                        raise RuntimeError("the policy broke")
                    return super().act(obs, info)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out" / "rollouts.jsonl"
    args = ["rollouts", "--policy", "my_policies:Flaky", "--policy_kwargs", '{"watch_frames": 3}']
    args += ["--questions", "synthetic", "--episodes", "4", "--out", str(out)]
    assert main(args) == 0
    instances = read_jsonl(out)
    assert [i.predicted_answer for i in instances] == ["red", "red"]
    # stream mode: the reset's frame and two "continue" frames, not the answer's observation
    assert all(len(EpisodeMemory.from_path(i.episode_path)) == 3 for i in instances)
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["skipped_by_reason"] == {"failed": 1, "no answer": 1}
    assert "the policy broke" in json.dumps(report["skipped_items"])
    assert len(list((out.parent / "rollouts.jsonl.episodes").iterdir())) == 2  # none half-written
    assert "| rollouts | count |" in capsys.readouterr().out

    assert main(args) == 1  # the episodes folder is not overwritten
    assert "already holds episodes" in capsys.readouterr().err
    args[2] = "no_such_module:policy"
    assert main(args) == 1
    assert "cannot import 'no_such_module'" in capsys.readouterr().err
    assert main(["rollouts", "--env_kwargs", "[1]", "--out", str(tmp_path / "x.jsonl")]) == 1
    assert "--env_kwargs must be a JSON object" in capsys.readouterr().err


def test_tiny_model_agent_rollouts(tiny_model_path, tmp_path):
    out = tmp_path / "tiny.jsonl"
    args = ["rollouts", "--policy", "vlm", "--model", str(tiny_model_path), "--backend", "hf"]
    args += ["--backend_kwargs", '{"max_pixels": 20000}', "--policy_kwargs"]
    args += ['{"max_new_tokens": 8}', "--env_kwargs", EPISODIC, "--episodes", "2"]
    assert main([*args, "--keep_unanswered", "true", "--out", str(out)]) == 0
    instances = read_jsonl(out)
    assert len(instances) == 2
    for inst in instances:
        agent = inst.meta["rollout"]["agent"]
        assert agent["prompt_id"] == "eqarm-gen-v1" and isinstance(agent["text"], str)
        assert (inst.predicted_answer is None) == (agent["reason"] is not None)


def test_an_interrupted_run_keeps_what_it_played(tmp_path):
    from habitat_eqarm.agents.rollouts import RolloutsConfig, run_rollouts
    from habitat_eqarm.envs.agents import ScriptedAgent

    class Interrupted(ScriptedAgent):
        episodes = 0

        def reset(self):
            self.episodes += 1

        def act(self, obs, info=None):
            if self.episodes == 3 and info.get("frame_index") == 1:
                raise KeyboardInterrupt
            return super().act(obs, info)

    out = tmp_path / "r.jsonl"
    cfg = RolloutsConfig(out=str(out), questions="synthetic", episodes=5)
    with pytest.raises(KeyboardInterrupt):
        run_rollouts(cfg, policy=Interrupted(lambda _, q: "red", watch_frames=3))
    assert len(read_jsonl(out)) == 2
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["episodes_played"] == 2 and report["done_now"] == 2
    written = sorted(p.name for p in (tmp_path / "r.jsonl.episodes").iterdir())
    assert len(written) == 2 and not any(name.startswith(".") for name in written)
