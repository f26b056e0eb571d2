"""Agent GRPO: train an EQA agent on TRL's ``GRPOTrainer`` with EQA-RM as the reward.

Prompts are EQA questions rendered with the generator prompt (``eqarm-gen-v1``) over the
question's keyframes; TRL samples G answers per question. :class:`EQARMAgentReward` parses each
answer with :func:`~habitat_eqarm.rewards.parsing.parse_response`, turns the parsed ones into
:class:`~habitat_eqarm.data.schema.EQAInstance` objects (question, keyframes, the answer and its
reasoning steps) and scores **all of a step's completions in one batched call** to
:class:`~habitat_eqarm.rewards.model.EQARewardModel`, whichever backend it runs on (in-process
``hf`` on its own device, or ``eqarm serve`` / any OpenAI-compatible endpoint, whose requests
then run concurrently). An optional :class:`GTAnswerReward` column mixes in the ground-truth
answer match with a weight, for ablations.

``mode: revise`` (critique-guided GRPO) makes each prompt the revision turn instead: before
training the start agent answers each question, EQA-RM judges those first answers in one call,
and each row holds the revision prompt (:func:`~habitat_eqarm.rewards.revision.revision_messages`:
first trace and answer, critique, score) and R1 (:func:`revision_rows`, cached in
``revision_rows.jsonl``); ``rm_reward`` then scores the revision (R2) and the optional
:class:`ImprovementReward` column pays R2 - R1.

Blocking: GRPO needs a step's rewards before its advantages, so the policy waits for the RM's
scoring in every step whatever the call style; what batching buys is that the wait is one batched
generation rather than one per completion (``benchmarks/agent_grpo_step.py`` measures the ratio
and the RM's share of a step). TRL 1.16 runs ``async`` reward functions on an event loop, but
concurrently with each other only: ``_calculate_rewards`` blocks on their result, so an async RM
call would not overlap the policy's generation either, and this reward function is synchronous.

Bad input never crashes a run: an answer with no parsable ``<predicted_answer>`` gets reward 0
and its reason is logged (Python logging, the ``agent/unparsable`` metric and the completions
table's ``reward_reason`` column), as does an answer none of whose K evaluations is well formed.
An RM that fails for good (the ``openai`` backend retries 408/429/5xx, connection errors and
timeouts first) stops the run with :class:`RewardModelError`, which names the step.

The RM's sampling seed is derived from the run's seed and the step, so a resumed run scores its
next step exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.backends.base import GenerationRequest, SamplingParams, load_backend
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.parsing import ParsedResponse, parse_response
from habitat_eqarm.rewards.prompts import GENERATOR_PROMPT, build_messages
from habitat_eqarm.rewards.revision import revision_messages
from habitat_eqarm.rewards.textmatch import answers_match
from habitat_eqarm.training.agent_grpo_config import AgentGRPOConfig
from habitat_eqarm.training.cgrpo import CurvesPlot, prompt_tokens
from habitat_eqarm.training.checkpoints import ResumeWeights
from habitat_eqarm.training.common import (
    instance_keyframes,
    one_process_inference,
    prepare_dataset,
    train_with_resume,
)
from habitat_eqarm.training.rewards import completion_text
from habitat_eqarm.training.trl_compat import GRPOHooks, log_metric

logger = logging.getLogger(__name__)

NO_ANSWER = "no parsable <predicted_answer>"
RM_NO_SCORE = "EQA-RM gave no well-formed evaluation"


class RewardModelError(RuntimeError):
    """EQA-RM failed for good during a training step (after the backend's retries)."""


@dataclass
class AgentGRPOStats:
    """What data preparation kept and skipped, written to ``agentgrpo_stats.json``."""

    instances: int = 0
    kept: int = 0  # questions made into rows; the dataset holds kept - skipped_too_long
    skipped_no_gt_score: int = 0  # always 0: agent GRPO needs questions, not labels
    skipped_duplicate: int = 0  # another answer to a question already kept
    skipped_no_frames: int = 0
    skipped_too_long: int = 0
    without_gt_answer: int = 0  # kept, but no GT reward / accuracy for them
    # mode revise: first answers the start agent wrote that give no revision prompt
    skipped_no_first_answer: int = 0  # no parsable <predicted_answer>
    skipped_no_first_score: int = 0  # EQA-RM gave no well-formed evaluation of it

    def to_dict(self) -> dict[str, int]:
        """A JSON-serialisable dict."""
        return asdict(self)


def question_of(inst: EQAInstance) -> EQAInstance:
    """``inst`` as a question for the agent: its answer, reasoning and scores removed."""
    data = inst.to_dict()
    data.update(predicted_answer=None, reasoning_steps=[], gt_score=None, gt_critique=None)
    return EQAInstance.from_dict(data)


def agent_rows(
    instances: list[EQAInstance], num_keyframes: int, stats: AgentGRPOStats
) -> list[dict[str, Any]]:
    """One row per question whose frames can be read: the generator prompt, the question as
    JSON, its ``gt_answer`` ("" if none) and where its frames are.

    Bench files hold several answers per question; the first instance of each (episode,
    question) pair stands for it and the others are counted as duplicates.
    """
    rows, seen = [], set()
    for inst in instances:
        key = (inst.episode_path or inst.episode_id, inst.question.strip())
        if key in seen:
            stats.skipped_duplicate += 1
            continue
        try:
            indices = instance_keyframes(inst, num_keyframes)
        except (ValueError, OSError) as err:
            print(f"agent GRPO: skipping {inst.question_id!r}: no frames ({err})")
            stats.skipped_no_frames += 1
            continue
        seen.add(key)
        question = question_of(inst)
        question.keyframe_indices = indices
        stats.without_gt_answer += not inst.gt_answer
        rows.append(
            {
                "question_id": inst.question_id,
                "episode_path": inst.episode_path,
                "keyframe_indices": indices,
                "prompt": build_messages(GENERATOR_PROMPT, question, len(indices)),
                "gt_answer": inst.gt_answer or "",
                "instance": json.dumps(question.to_dict()),
            }
        )
    stats.kept += len(rows)
    return rows


REVISION_ROWS = "revision_rows.jsonl"


def first_answer_texts(cfg: AgentGRPOConfig, rows: list[dict[str, Any]], model: EQARewardModel):
    """The start agent's (``cfg.model_name_or_path``) first answers: ``cfg.first_answers``
    texts per row's generator prompt, sampled at the GRPO temperature, seeded by the run."""
    device = "cpu" if cfg.use_cpu else None
    agent = load_backend("hf", cfg.model_name_or_path, device=device, max_pixels=cfg.max_pixels)
    try:
        requests = []
        for row in rows:
            frames, _ = model.keyframes_for(EQAInstance.from_dict(json.loads(row["instance"])))
            requests.append(GenerationRequest(row["prompt"], frames, prompt_id=GENERATOR_PROMPT.id))
        params = SamplingParams(
            k=cfg.first_answers,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_completion_length or 512,
            seed=step_seed(cfg.seed, -1),
        )
        return [result.texts for result in agent.generate(requests, params)]
    finally:
        agent.close()


def revision_rows(
    cfg: AgentGRPOConfig,
    rows: list[dict[str, Any]],
    rm_reward: EQARMAgentReward,
    stats: AgentGRPOStats,
) -> list[dict[str, Any]]:
    """Question rows -> revision-turn rows (``mode: revise``), cached in ``output_dir``.

    Per question, the start agent's first answers, each judged by EQA-RM (one batched call, the
    seed of "step 0"); a row per judged answer: the revision prompt (the first trace and answer,
    EQA-RM's critique and score), the question as ``instance`` (the revised answer is judged on
    the same keyframes), ``first_reward`` (R1 = score / 10), ``first_answer`` and
    ``first_critique``. A first answer that does not parse, or that EQA-RM could not score, is
    counted and gives no row (the env's two-turn mode offers no revision without one either).
    The rows are written to ``revision_rows.jsonl`` (after a fingerprint line: the agent, EQA-RM,
    data, seed and questions) and read back from there on a resumed run, so it revises exactly
    the same first answers; a file made for another run is a ValueError.
    """
    # several processes: the main one writes the rows, the others then read them
    with cfg.main_process_first(local=cfg.save_on_each_node, desc="revise: first answers"):
        records = _revision_records(cfg, rows, rm_reward)
    stats.skipped_no_first_answer = sum(r is None for r in records)
    stats.skipped_no_first_score = sum(r == {} for r in records)
    return [r for r in records if r]


def _revision_records(
    cfg: AgentGRPOConfig, rows: list[dict[str, Any]], rm_reward: EQARMAgentReward
) -> list[dict[str, Any] | None]:
    """One record per first answer (None: unparsable, {}: unscored), from the cache if any."""
    cache = Path(cfg.output_dir) / REVISION_ROWS
    fingerprint = {
        "agent": cfg.model_name_or_path,
        "rm_model": cfg.rm_model,
        "data": cfg.data,
        "seed": cfg.seed,
        "first_answers": cfg.first_answers,
        "questions": [row["question_id"] for row in rows],
    }
    if cache.is_file():
        lines = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
        if not lines or lines[0] != {"fingerprint": fingerprint}:
            raise ValueError(
                f"{cache}: made for another run (its first line is the agent, EQA-RM, data, "
                f"seed and questions it was made for, expected {fingerprint}); remove it or "
                "use a new output_dir"
            )
        return lines[1:]
    with one_process_inference(cfg):
        texts = first_answer_texts(cfg, rows, rm_reward.reward_model)
    firsts = []  # (row, parsed first answer, the question with it)
    records: list[dict[str, Any] | None] = []
    for row, samples in zip(rows, texts, strict=True):
        for text in samples:
            parsed = parse_response(text)
            if parsed.answer is None:
                records.append(None)
            else:
                firsts.append((row, parsed, answered(row["instance"], parsed)))
    judged = rm_reward.score(0, [first for _, _, first in firsts])
    for (row, parsed, first), judgement in zip(firsts, judged, strict=True):
        if judgement.score is None:
            records.append({})
            continue
        critique = next((s.critique for s in judgement.samples if s.score is not None), None)
        n = len(row["keyframe_indices"])
        records.append(
            {
                **row,
                "prompt": revision_messages(first, critique, judgement.score, n),
                "first_answer": parsed.answer,
                "first_gt_match": float(answers_match(parsed.answer, [row["gt_answer"]]))
                if row["gt_answer"]
                else None,
                "first_critique": critique or "",
                "first_reward": judgement.score / 10.0,
            }
        )
    lines = [{"fingerprint": fingerprint}, *records]
    atomic_write_text(cache, "".join(json.dumps(r) + "\n" for r in lines))
    return records


def prepare(
    cfg: AgentGRPOConfig, rm_reward: EQARMAgentReward | None = None
) -> tuple[Any, Any, AgentGRPOStats]:
    """The training dataset (images loaded lazily), the processor, and what was skipped.

    ``mode: revise`` needs ``rm_reward`` (EQA-RM judges the first answers, see
    :func:`revision_rows`). Writes ``agentgrpo_stats.json``; raises ValueError when no question
    is usable.
    """
    stats = AgentGRPOStats()
    if cfg.mode == "revise" and rm_reward is None:
        raise ValueError("agent GRPO mode revise: EQA-RM must judge the first answers")

    def rows(instances: list[EQAInstance]) -> list[dict[str, Any]]:
        questions = agent_rows(instances, cfg.num_keyframes, stats)
        if cfg.mode == "revise" and questions:
            return revision_rows(cfg, questions, rm_reward, stats)
        return questions

    def tokens(example: dict[str, Any], processor: Any) -> int:
        return prompt_tokens(example, processor, cfg)

    dataset, processor = prepare_dataset(
        cfg, "agent-GRPO", stats, rows, tokens, cfg.max_prompt_tokens, needs_gt_score=False
    )
    return dataset, processor, stats


def answered(question: dict[str, Any] | str, parsed: ParsedResponse) -> EQAInstance:
    """The question (a row's ``instance``) with the agent's parsed answer, for EQA-RM."""
    data = json.loads(question) if isinstance(question, str) else dict(question)
    inst = EQAInstance.from_dict(data)
    inst.predicted_answer = parsed.answer
    inst.reasoning_steps = list(parsed.steps)
    return inst


def step_seed(seed: int, step: int) -> int:
    """The RM's sampling seed for a training step: the same in a resumed run."""
    digest = hashlib.sha256(f"agent-grpo\x1f{seed}\x1f{step}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


class EQARMAgentReward:
    """TRL reward function: EQA-RM's score / 10 of each completion, one batched RM call a step.

    ``batch=False`` makes one call per completion instead (benchmarks compare the two). The
    dataset must carry the ``instance`` column (:func:`agent_rows`). ``seconds`` and ``calls``
    add up the time spent in the reward model and the calls made.
    """

    def __init__(
        self,
        reward_model: EQARewardModel,
        *,
        k: int = 1,
        aggregate: str = "mean",
        temperature: float = 0.8,
        top_p: float = 0.9,
        max_new_tokens: int = 512,
        seed: int = 0,
        batch: bool = True,
        alone: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> None:
        self.__name__ = "rm_reward"  # TRL names its logged reward column after this
        self.reward_model = reward_model
        self.settings = dict(
            k=k,
            aggregate=aggregate,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
        )
        self.seed = seed
        self.batch = batch
        # each process scores its own completions, as many as parsed there (none, maybe), so
        # EQA-RM must not generate in lockstep with the other processes (ZeRO-3's synced_gpus)
        self.alone = alone
        self.seconds = 0.0
        self.calls = 0
        self.last: list[float] = []  # the latest call's rewards (read by ImprovementReward)

    def __call__(
        self,
        prompts: list,
        completions: list,
        instance: list[str] | None = None,
        trainer_state: Any = None,
        log_metric: Any = None,
        log_extra: Any = None,
        **columns: Any,
    ) -> list[float]:
        if instance is None:
            raise KeyError("rm_reward needs the dataset column 'instance' (see agent_rows)")
        log_metric, log_extra = log_metric or _noop, log_extra or _noop
        step = trainer_state.global_step + 1 if trainer_state is not None else 0
        parsed = [parse_response(completion_text(c)) for c in completions]
        rewards = [0.0] * len(completions)
        reasons = [""] * len(completions)
        todo = []
        for i, p in enumerate(parsed):
            if p.answer is None:
                reasons[i] = NO_ANSWER
            else:
                todo.append(i)
        judged = self.score(step, [answered(instance[i], parsed[i]) for i in todo])
        for i, judgement in zip(todo, judged, strict=True):
            if judgement.score is None:
                reasons[i] = RM_NO_SCORE
            else:
                rewards[i] = judgement.score / 10.0
        for i, reason in enumerate(reasons):
            if reason:
                logger.info("agent GRPO step %d, completion %d: reward 0 (%s)", step, i, reason)
        n = max(1, len(completions))
        log_metric("agent/unparsable", sum(r == NO_ANSWER for r in reasons) / n)
        log_metric("agent/rm_no_score", sum(r == RM_NO_SCORE for r in reasons) / n)
        log_extra("reward_reason", reasons)
        first = columns.get("first_reward")
        if first is not None:  # mode revise: how the revisions compare with the first answers
            log_metric("revise/first_reward", sum(first) / n)
            gains = [r - f for r, f in zip(rewards, first, strict=True)]
            log_metric("revise/improvement", sum(gains) / n)
        self.last = rewards
        return rewards

    def score(self, step: int, instances: list[EQAInstance]) -> list[Any]:
        """EQA-RM's judgements of ``instances`` for training step ``step``."""
        if not instances:
            return []
        seed = step_seed(self.seed, step)
        start = time.perf_counter()
        groups = [instances] if self.batch else [[inst] for inst in instances]
        judged = []
        try:
            with self.alone():
                for group in groups:
                    judged += self.reward_model.score(group, seed=seed, **self.settings)
                    self.calls += 1
        except Exception as err:
            raise RewardModelError(
                f"agent GRPO step {step}: EQA-RM ({self.reward_model.backend.name} backend, "
                f"model {self.reward_model.name!r}) failed scoring {len(instances)} "
                f"completions: {type(err).__name__}: {err}"
            ) from err
        finally:
            self.seconds += time.perf_counter() - start
        return judged


class ImprovementReward:
    """TRL reward function of ``mode: revise``: R2 - R1, the revised answer's ``rm_reward``
    (read from ``rm_reward``'s latest call, which TRL makes first) minus the first answer's
    (the row's ``first_reward``). Why it changes little under GRPO: docs/agent_grpo.md."""

    def __init__(self, rm_reward: EQARMAgentReward) -> None:
        self.__name__ = "improvement"
        self.rm_reward = rm_reward

    def __call__(self, prompts: list, completions: list, first_reward: list[float], **_: Any):
        revised = self.rm_reward.last
        if len(revised) != len(completions):
            raise RuntimeError("improvement must follow rm_reward in the reward functions")
        return [r - f for r, f in zip(revised, first_reward, strict=True)]


class GTAnswerReward:
    """TRL reward function: 1.0 when the parsed answer matches the row's ``gt_answer``, else 0."""

    def __init__(self) -> None:
        self.__name__ = "gt_reward"

    def __call__(self, prompts: list, completions: list, gt_answer: list[str], **_: Any):
        return [gt_match(c, gt) for c, gt in zip(completions, gt_answer, strict=True)]


def gt_match(completion: Any, gt_answer: str) -> float | None:
    """1.0 / 0.0: the completion's answer matches ``gt_answer``; None without a reference."""
    if not gt_answer:
        return None
    answer = parse_response(completion_text(completion)).answer
    return float(answers_match(answer, [gt_answer]))


def load_reward_model(cfg: AgentGRPOConfig) -> EQARewardModel:
    """EQA-RM as ``cfg`` names it: in-process ``hf`` on ``rm_device`` or an endpoint."""
    common = dict(num_keyframes=cfg.num_keyframes)
    if cfg.rm_backend == "openai":
        return EQARewardModel.from_pretrained(
            cfg.rm_model,
            "openai",
            base_url=cfg.rm_base_url,
            api_key_env=cfg.rm_api_key_env,
            timeout=cfg.rm_timeout,
            max_retries=cfg.rm_max_retries,
            max_pixels=cfg.max_pixels,
            cache=False,  # every step's completions are new
            **common,
        )
    return EQARewardModel.from_pretrained(
        cfg.rm_model,
        "hf",
        device=cfg.rm_device,
        dtype=cfg.rm_dtype,
        batch_size=cfg.rm_batch_size,
        max_pixels=cfg.max_pixels,
        **common,
    )


def make_rm_reward(
    args: AgentGRPOConfig, reward_model: EQARewardModel | None = None
) -> EQARMAgentReward:
    """The ``rm_reward`` function ``args`` describes, over ``reward_model`` or the one it names."""
    if reward_model is None:
        with one_process_inference(args):  # whole, not partitioned by ZeRO-3
            reward_model = load_reward_model(args)
    return EQARMAgentReward(
        reward_model,
        k=args.rm_k,
        aggregate=args.rm_aggregate,
        temperature=args.rm_temperature,
        top_p=args.rm_top_p,
        max_new_tokens=args.rm_max_new_tokens,
        seed=args.seed,
        batch=args.rm_batch,
        alone=functools.partial(one_process_inference, args),
    )


class AgentGRPOTrainer(ResumeWeights, GRPOHooks):
    """TRL's ``GRPOTrainer`` whose rewards are EQA-RM's score and, optionally, the GT match.

    ``reward_model``: an :class:`EQARewardModel` to use instead of loading ``args.rm_model``
    (closed with the trainer's :meth:`close`, like a loaded one).
    """

    def __init__(
        self, model: Any, args: AgentGRPOConfig, reward_model: EQARewardModel | None = None, **kw
    ) -> None:
        if "reward_funcs" in kw:
            raise TypeError("AgentGRPOTrainer's rewards come from its config; no reward_funcs")
        funcs: list[Any] = []
        weights: list[float] = []
        self.rm_reward: EQARMAgentReward | None = None
        if args.rm_weight > 0:
            self.rm_reward = make_rm_reward(args, reward_model)
            funcs.append(self.rm_reward)
            weights.append(args.rm_weight)
        if args.improvement_weight > 0 and self.rm_reward is not None:
            funcs.append(ImprovementReward(self.rm_reward))
            weights.append(args.improvement_weight)
        if args.gt_weight > 0:
            funcs.append(GTAnswerReward())
            weights.append(args.gt_weight)
        args.reward_weights = weights
        super().__init__(model=model, reward_funcs=funcs, args=args, **kw)

    def calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's reward columns; also logs the GT-answer accuracy of the step's answers (the
        ablations' yardstick), whether or not it is a reward."""
        gts = [x.get("gt_answer", "") for x in inputs]
        matches = [gt_match(c, gt) for c, gt in zip(completions, gts, strict=True)]
        known = [a for a in matches if a is not None]
        if known:
            mode = "train" if self.model.training else "eval"
            log_metric(self, "agent/gt_accuracy", sum(known) / len(known), mode)
        firsts = [x.get("first_gt_match") for x in inputs]
        pairs = [(a, f) for a, f in zip(matches, firsts, strict=True) if None not in (a, f)]
        if pairs:  # mode revise: GT accuracy of the revisions minus that of the first answers
            mode = "train" if self.model.training else "eval"
            gain = sum(a - f for a, f in pairs) / len(pairs)
            log_metric(self, "revise/gt_gain", gain, mode)
        return super().calculate_rewards(inputs, prompts, completions, completion_ids_list)

    def close(self) -> None:
        """Release the reward model."""
        if self.rm_reward is not None:
            self.rm_reward.reward_model.close()


CURVES = (
    (
        "rewards (mean per completion)",
        {
            "EQA-RM reward (score / 10)": "rewards/rm_reward/mean",
            "GT-answer reward": "rewards/gt_reward/mean",
            "revised minus first (R2 - R1)": "revise/improvement",
            "total reward": "reward",
        },
    ),
    (
        "answers",
        {
            "GT accuracy": "agent/gt_accuracy",
            "GT accuracy, revised minus first": "revise/gt_gain",
            "unparsable share": "agent/unparsable",
            "no RM score share": "agent/rm_no_score",
        },
    ),
)


def train_agent_grpo(
    cfg: AgentGRPOConfig,
    callbacks: list | None = None,
    reward_model: EQARewardModel | None = None,
) -> AgentGRPOTrainer:
    """Run agent GRPO end to end; returns the trainer (the agent is saved in ``output_dir``).

    Resumes from the newest complete checkpoint in ``output_dir`` when there is one. The reward
    model is closed when training ends (or fails).
    """
    first_judge = None
    if cfg.mode == "revise":  # EQA-RM judges the first answers, then scores the revisions
        first_judge = make_rm_reward(cfg, reward_model)
        reward_model = first_judge.reward_model
    try:
        dataset, processor, stats = prepare(cfg, first_judge)
    except BaseException:
        if reward_model is not None:
            reward_model.close()
        raise
    print(f"agent GRPO data: {json.dumps(stats.to_dict())}")
    curves = CurvesPlot(Path(cfg.output_dir) / cfg.curves_png, CURVES)

    def make(**kw: Any) -> AgentGRPOTrainer:
        return AgentGRPOTrainer(reward_model=reward_model, **kw)

    try:
        trainer = train_with_resume(make, cfg, dataset, processor, [curves, *(callbacks or [])])
    finally:
        if reward_model is not None:
            reward_model.close()
    trainer.close()
    return trainer
