"""Rollouts to reward-model data: play a policy over an env, keep what EQA-RM needs.

:func:`run_rollouts` plays ``episodes`` episodes of a Gymnasium env with a
:class:`~habitat_eqarm.envs.agents.Policy`, records the frames the agent acted on with the
:class:`~habitat_eqarm.data.recorder.EpisodeMemoryRecorder` (written to disk in OpenEQA's
folder layout, or lossless mp4), and writes one :class:`EQAInstance` per answered episode: the
question, the agent's reasoning steps and answer, the written episode (absolute
``episode_path``) and ``keyframe_indices`` into it, the ground-truth answer where the env knows
it, and in ``meta["rollout"]`` how it was made. ``meta["generation"]`` (format, usability,
raw text, whether it matches the ground truth) is filled as `eqarm bench generate` fills it,
so `eqarm bench judge` and then `eqarm train rft` take the file unchanged.

The recording rule is the reward wrapper's: the reset's observation and every step's but the
last (the observation returned with the answer comes after the agent's last decision).
An episode that fails (the env or the policy raises, no answer, nothing recorded) is skipped
and reported in ``<out>.report.json`` / ``.report.md``; the JSONL is written atomically, also
when the run is interrupted (with the episodes played so far, ``episodes_played``).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from habitat_eqarm.bench.builder.common import (
    ProgressFactory,
    StageReport,
    error_text,
    no_progress,
)
from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.data.schema import EQAInstance, response_id, write_jsonl
from habitat_eqarm.envs import EMEQA_ID
from habitat_eqarm.envs.agents import Policy, ScriptedAgent, play_episode
from habitat_eqarm.rewards.backends.base import backend_kwargs
from habitat_eqarm.rewards.episode_scoring import (
    EpisodeState,
    answer_text,
    find_frame_key,
    frames_in,
    lookup,
)
from habitat_eqarm.rewards.textmatch import answers_match

POLICIES = ("scripted", "vlm")


@dataclass
class RolloutsConfig:
    """Options of `eqarm rollouts`."""

    out: str = field(default="outputs/rollouts/rollouts.jsonl", metadata={"help": "output JSONL"})
    episodes_dir: str | None = field(
        default=None, metadata={"help": "where episodes are written (default: <out>.episodes)"}
    )
    env: str = field(default=EMEQA_ID, metadata={"help": "Gymnasium id of the env"})
    env_kwargs: str | None = field(
        default=None, metadata={"help": 'JSON object for gymnasium.make, e.g. {"mode": "stream"}'}
    )
    questions: str | None = field(
        default=None, metadata={"help": "EMEQA: OpenEQA questions JSON, or 'synthetic'"}
    )
    data_root: str | None = field(default=None, metadata={"help": "EMEQA: episode folders"})
    episodes: int = field(default=8, metadata={"help": "episodes to play"})
    seed: int = field(default=0, metadata={"help": "seed of the first reset (episode order)"})
    policy: str = field(
        default="scripted",
        metadata={"help": "scripted, vlm, or module:callable (a factory returning a policy)"},
    )
    policy_kwargs: str | None = field(
        default=None, metadata={"help": "JSON object of the policy's keyword arguments"}
    )
    model: str | None = field(
        default=None, metadata={"help": "vlm: path, hub id or API model (default: tiny)"}
    )
    backend: str = field(default="hf", metadata={"help": "vlm: registered backend"})
    backend_kwargs: str | None = field(
        default=None, metadata={"help": "vlm: JSON object of backend options"}
    )
    num_keyframes: int = field(default=5, metadata={"help": "keyframes per instance"})
    keyframe_method: str = "uniform"
    record_format: str = field(default="folder", metadata={"help": "folder or mp4"})
    max_frames: int = field(default=256, metadata={"help": "frames kept per episode in memory"})
    max_steps: int = field(default=10_000, metadata={"help": "steps before an episode fails"})
    keep_unanswered: bool = field(
        default=False, metadata={"help": "write episodes without an answer too"}
    )


def load_callable(spec: str) -> Callable[..., Any]:
    """``"package.module:name"`` -> the object; errors name the part that is missing."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--policy: expected scripted, vlm or module:callable, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"--policy {spec}: cannot import {module_name!r} ({err})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--policy {spec}: {module_name} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def make_policy(cfg: RolloutsConfig, model: str | None = None) -> Policy:
    """The policy ``cfg.policy`` names, built with ``cfg.policy_kwargs``.

    ``vlm``: a :class:`~habitat_eqarm.agents.vlm.VLMAgent` over ``model`` (``cfg.model`` if
    None); ``module:callable``: an object with ``act`` is the policy, anything else is called
    with the keyword arguments and must return one.
    """
    kwargs = backend_kwargs(cfg.policy_kwargs, "policy_kwargs")
    if cfg.policy == "scripted":
        return ScriptedAgent(**kwargs)
    if cfg.policy == "vlm":
        from habitat_eqarm.agents.vlm import VLMAgent

        if not (model or cfg.model):
            raise ValueError("--policy vlm needs --model")
        options = backend_kwargs(cfg.backend_kwargs)
        kwargs = {"num_keyframes": cfg.num_keyframes, "seed": cfg.seed, **kwargs}
        return VLMAgent.from_pretrained(
            model or cfg.model, cfg.backend, backend_kwargs=options, **kwargs
        )
    obj = load_callable(cfg.policy)
    policy = obj if hasattr(obj, "act") and not isinstance(obj, type) else obj(**kwargs)
    if not isinstance(policy, Policy):
        raise ValueError(
            f"--policy {cfg.policy}: {type(policy).__name__} is not a policy "
            "(it needs reset() and act(obs, info))"
        )
    return policy


def make_env(cfg: RolloutsConfig) -> gym.Env:
    """``gymnasium.make(cfg.env, **env_kwargs)`` (``questions`` / ``data_root`` for EMEQA)."""
    kwargs = backend_kwargs(cfg.env_kwargs, "env_kwargs")
    if cfg.questions is not None:
        kwargs.setdefault("questions", cfg.questions)
    if cfg.data_root is not None:
        kwargs.setdefault("data_root", cfg.data_root)
    return gym.make(cfg.env, **kwargs)


def env_questions(env: gym.Env) -> dict[str, EQAInstance]:
    """The env's questions by id, where it exposes them: they give the ground-truth answer,
    category and source of each rollout. ``EMEQAEnv.questions``, or the habitat adapter's
    dataset episodes (``habitat_env.episodes``: question, question_id, answer, ...)."""
    questions = getattr(env.unwrapped, "questions", None) or []
    found = {q.question_id: q for q in questions if isinstance(q, EQAInstance)}
    habitat_env = getattr(env.unwrapped, "habitat_env", None)
    for episode in getattr(habitat_env, "episodes", None) or []:
        qid, question = getattr(episode, "question_id", None), getattr(episode, "question", None)
        if isinstance(qid, str) and isinstance(question, str):
            found[qid] = EQAInstance(
                question_id=qid,
                question=question,
                category=getattr(episode, "category", None) or "",
                source=getattr(episode, "source", None) or "other",
                episode_id=str(getattr(episode, "scene_id", "") or ""),
                gt_answer=getattr(episode, "answer", None),
            )
    return found


class _Recorder:
    """Records one env's episodes (the wrapper's rule: every observation acted on)."""

    def __init__(self, env: gym.Env, cfg: RolloutsConfig, episodes_dir: Path) -> None:
        self.frame_key = find_frame_key(env.observation_space, None, str(env))
        recorder = EpisodeMemoryRecorder(
            cfg.max_frames, out_dir=episodes_dir, write_format=cfg.record_format
        )
        self.state = EpisodeState(recorder)
        spec = getattr(env, "spec", None)
        self.prefix = (spec.id if spec else type(env.unwrapped).__name__).replace("/", "-").lower()

    def begin(self) -> None:
        self.state.begin(self.prefix)

    def observe(self, obs: Any, info: dict, action: Any, done: bool) -> None:
        question = lookup("obs.question", obs, info, action)
        qid = lookup("info.question_id", obs, info, action)
        self.state.observe(frames_in(obs, self.frame_key), question, qid, final=done)


def run_rollouts(
    cfg: RolloutsConfig,
    policy: Policy | None = None,
    env: gym.Env | None = None,
    progress: ProgressFactory = no_progress,
) -> StageReport:
    """Play ``cfg.episodes`` episodes and write their instances to ``cfg.out`` (module doc).

    ``policy`` / ``env``: given ones are used as they are (and not closed); otherwise they are
    made from ``cfg`` and closed at the end.
    """
    if cfg.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {cfg.episodes}")
    if cfg.record_format not in ("folder", "mp4"):
        raise ValueError(f"--record_format must be folder or mp4, got {cfg.record_format!r}")
    out = Path(cfg.out)
    episodes_dir = (
        Path(cfg.episodes_dir) if cfg.episodes_dir else out.with_name(f"{out.name}.episodes")
    )
    if episodes_dir.is_dir() and any(episodes_dir.iterdir()):
        raise ValueError(
            f"{episodes_dir}: already holds episodes; remove it or give another --episodes_dir"
        )
    own_env, own_policy = env is None, policy is None
    env = make_env(cfg) if env is None else env
    report = StageReport("rollouts", total=cfg.episodes)
    instances: list[EQAInstance] = []
    try:
        policy = make_policy(cfg) if policy is None else policy
        recorder = _Recorder(env, cfg, episodes_dir.resolve())
        questions = env_questions(env)
        counts: Counter = Counter()
        played = 0
        try:
            with progress(cfg.episodes, "rollouts") as bar:
                for n in range(cfg.episodes):
                    inst = _one_episode(cfg, env, policy, recorder, questions, counts, n, report)
                    if inst is not None:
                        instances.append(inst)
                    played += 1
                    bar.update(1)
        finally:  # also when interrupted: what was played is written, nothing half-written
            recorder.state.recorder.close()
            write_jsonl(out, instances)
            report.done_now = len(instances)
            report.summary["episodes_played"] = played
            _tally(report, instances)
            report.write(out)
    finally:
        if own_policy and hasattr(policy, "close"):
            policy.close()
        if own_env:
            env.close()
    return report


def _one_episode(cfg, env, policy, recorder, questions, counts, n, report) -> EQAInstance | None:
    """Episode ``n``: its instance, or None (skipped and reported)."""
    label = f"episode {n}"
    recorder.begin()
    try:
        played = play_episode(
            env,
            policy,
            seed=cfg.seed if n == 0 else None,
            max_steps=cfg.max_steps,
            on_step=recorder.observe,
        )
        state = recorder.state
        label = f"episode {n} (question {state.question_id})"
        info = played.info
        answer = answer_text(lookup("info.answer", None, info, None), f"{label}: info.answer")
        if answer is None and not cfg.keep_unanswered:
            recorder.state.recorder.clear()
            report.skip(label, "no answer: the episode ended without one")
            return None
        memory = state.recorder.memory()
        steps = list(state.recorder.step_indices)
        path = state.recorder.finish()
    except Exception as err:
        recorder.state.recorder.clear()  # an unfinished episode on disk is discarded
        report.skip(label, f"failed: {error_text(err)}")
        return None
    qid = state.question_id or f"{recorder.prefix}-ep{state.episode:06d}"
    question = questions.get(qid)
    rollout = counts[qid]
    counts[qid] += 1
    keyframes = [steps[i] for i in memory.keyframes(cfg.num_keyframes, cfg.keyframe_method)]
    reasoning = lookup("info.reasoning_steps", None, info, None) or []
    if isinstance(reasoning, str):
        reasoning = [s for s in reasoning.splitlines() if s.strip()]
    gt = question.gt_answer if question else info.get("gt_answer")
    agent_output = getattr(policy, "last_output", None)
    agent_output = agent_output if isinstance(agent_output, dict) else {}
    meta = dict(question.meta) if question else {}
    meta["rollout"] = {
        "policy": cfg.policy,
        "env": cfg.env,
        "episode": n,
        "env_question_id": qid,
        "steps": played.steps,
        "return": played.reward,
        "frames_recorded": len(steps),
        "agent": agent_output or None,
    }
    references = [gt or "", *meta.get("extra_answers", [])]
    meta["generation"] = {  # as `eqarm bench generate` writes it (judge reads "usable")
        "model": cfg.model if cfg.policy == "vlm" else cfg.policy,
        "prompt_id": agent_output.get("prompt_id", ""),
        "format_ok": bool(agent_output.get("format_ok", answer is not None)),
        "usable": answer is not None and bool(reasoning),
        "matches_gt": answers_match(answer, references) if answer and gt else None,
        "text": agent_output.get("text", ""),
    }
    return EQAInstance(
        question_id=response_id(qid, rollout),
        question=state.question or (question.question if question else ""),
        category=question.category if question else "",
        source=question.source if question else "other",
        episode_id=path.name if path else "",
        gt_answer=gt,
        predicted_answer=answer,
        reasoning_steps=[str(s) for s in reasoning],
        episode_path=str(path) if path else None,
        keyframe_indices=keyframes,
        meta=meta,
    )


def _tally(report: StageReport, instances: list[EQAInstance]) -> None:
    gens = [inst.meta["generation"] for inst in instances]
    report.counts["instances written"] = len(instances)
    report.counts["well-formed agent output"] = sum(g["format_ok"] for g in gens)
    report.counts["matching the GT answer"] = sum(g["matches_gt"] is True for g in gens)
    report.counts["not matching the GT answer"] = sum(g["matches_gt"] is False for g in gens)
