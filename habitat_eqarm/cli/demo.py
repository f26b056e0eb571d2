"""`eqarm demo`: score a right and a wrong answer to each question of one episode.

The episode is, in order of preference: ``--episode`` (a folder or video), OpenEQA's demo
episode found through ``--data``, ``$EQARM_OPENEQA`` or ``../shared/openeqa``, or a synthetic
episode drawn on the fly (a fresh machine without OpenEQA). Each question is answered twice,
with its true answer and with a plausible wrong one, each with a short reasoning trace, and
both answers are scored with K samples of the reward model. Writes ``contact_sheet.png``,
``report.md``, ``demo.json`` and ``questions.md`` and prints the table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from habitat_eqarm.data import EpisodeMemory, EQAInstance, find_openeqa_dir, load_openeqa
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.openeqa import DATA_ENV
from habitat_eqarm.data.schema import response_id
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.data.visualize import contact_sheet, save_image
from habitat_eqarm.rewards.config import SamplingOptions, ScoringConfig, VoteOptions

DEMO_QUESTIONS = "open-eqa-demo-data.json"
GET_OPENEQA = (
    "OpenEQA was not found (looked at --data, ${env} and ../shared/openeqa).\n"
    "To use it: clone https://github.com/facebookresearch/open-eqa, download the episode\n"
    "histories as its README explains, and pass the folder holding open-eqa-v0.json with\n"
    "--data DIR or ${env}=DIR. Running on a synthetic episode instead."
)


@dataclass
class DemoConfig(VoteOptions, SamplingOptions):
    """Options of `eqarm demo`, with ``ScoringConfig``'s vote and sampling sections (its
    keyframe options pick the contact sheet's frames)."""

    data: str | None = field(default=None, metadata={"help": "folder with OpenEQA's files"})
    episode: str | None = field(
        default=None, metadata={"help": "an episode folder or video to use instead"}
    )
    questions: str | None = field(
        default=None, metadata={"help": "OpenEQA-format questions JSON to print with --episode"}
    )
    out: str = field(default="outputs/demo", metadata={"help": "output folder"})
    num_keyframes: int = field(default=5, metadata={"help": "keyframes to pick"})
    keyframe_method: str = field(default="uniform", metadata={"help": "uniform or diverse"})
    seed: int = field(
        default=0, kw_only=True, metadata={"help": "seed of the synthetic episode and sampling"}
    )
    model: str | None = field(
        default=None, metadata={"help": "reward model path or hub id (default: tiny, untrained)"}
    )
    backend: str = field(default="hf", metadata={"help": "reward-model backend"})
    k: int = field(
        default=4, kw_only=True, metadata={"help": "samples per answer (test-time scaling)"}
    )
    aggregate: str = field(
        default="majority", kw_only=True, metadata={"help": "mean, majority or median"}
    )
    max_new_tokens: int = field(
        default=256, kw_only=True, metadata={"help": "tokens per sampled critique"}
    )


def scoring(cfg: DemoConfig) -> ScoringConfig:
    """How the demo scores: its vote and sampling options (keyframes: the model's own)."""
    return ScoringConfig.of(cfg, VoteOptions, SamplingOptions)


def make_parser():
    """The `eqarm demo` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(DemoConfig)


def load_demo_episode(cfg: DemoConfig) -> tuple[EpisodeMemory, list[EQAInstance], str]:
    """The episode, its questions and where it came from (see module doc)."""
    if cfg.episode:
        questions = load_openeqa(cfg.questions) if cfg.questions else []
        return EpisodeMemory.from_path(cfg.episode), questions, f"episode {cfg.episode}"
    data = Path(cfg.data) if cfg.data else find_openeqa_dir()
    if data is not None and (data / DEMO_QUESTIONS).is_file():
        questions = load_openeqa(data / DEMO_QUESTIONS, data_root=data)
        episode = questions[0].episode_path
        return EpisodeMemory.from_path(episode), questions, f"OpenEQA demo episode {episode}"
    if cfg.data:
        raise FileNotFoundError(f"{cfg.data}: no {DEMO_QUESTIONS} in this folder")
    print(GET_OPENEQA.replace("${env}", f"${DATA_ENV}"))
    memory, questions = make_synthetic_episode(seed=cfg.seed)
    return memory, questions, f"synthetic episode (seed {cfg.seed})"


#: Plausible wrong answers for OpenEQA's three demo questions (by question id).
DEMO_WRONG_ANSWERS = {
    "f15fbfbb-eb0f-41e7-9d33-bc75e48e62d1": "Four chairs",
    "de9d3196-2407-4c5a-b3ad-05ed7bf376a2": "Turn left into the kitchen.",
    "b0dafc4b-6a1c-4048-913c-90867c124367": "In the living room",
}


def wrong_answer(question: EQAInstance, others: list[EQAInstance]) -> str:
    """A plausible wrong answer: hand-written for the demo questions, else borrowed.

    Synthetic questions swap in another value of the same kind from the scene; other
    questions borrow the answer of another question of the same category (or any other).
    """
    if question.question_id in DEMO_WRONG_ANSWERS:
        return DEMO_WRONG_ANSWERS[question.question_id]
    if question.meta.get("synthetic") and question.category == "attribute recognition":
        return (
            question.meta["colour_b"]
            if question.meta["colour_b"] != question.gt_answer
            else "black"
        )
    pool = [o.gt_answer for o in others if o.gt_answer and o.gt_answer != question.gt_answer]
    same = [o.gt_answer for o in others if o.category == question.category and o.gt_answer in pool]
    return (same or pool or ["I do not know"])[0]


def answered(question: EQAInstance, answer: str, n: int, keyframes: list[int]) -> EQAInstance:
    """The question answered with ``answer`` and a short reasoning trace, as ``<qid>#<n>``."""
    steps = [
        f"I need to answer: {question.question.strip()}",
        "I go back over my memory of the walk, from the first rooms to the last.",
        f"What I saw points to: {answer}.",
    ]
    return EQAInstance(
        question_id=response_id(question.question_id, n),
        question=question.question,
        category=question.category,
        source=question.source,
        episode_id=question.episode_id,
        gt_answer=question.gt_answer,
        predicted_answer=answer,
        reasoning_steps=steps,
        episode_path=question.episode_path,
        keyframe_indices=list(keyframes),
        meta={"answer_is_true": n == 0},
    )


def questions_table(questions: list[EQAInstance]) -> str:
    """The questions as a Markdown table."""
    rows = ["| # | category | question | answer |", "|---|---|---|---|"]
    for i, q in enumerate(questions, 1):
        rows.append(f"| {i} | {q.category} | {q.question} | {q.gt_answer or ''} |")
    return "\n".join(rows)


def _cell(text: str | None, width: int = 70) -> str:
    text = " ".join((text or "").split()).replace("|", "/")
    return text if len(text) <= width else text[: width - 1] + "…"


def scores_table(instances: list[EQAInstance], judgements: list) -> str:
    """One row per answer: the question, the answer, whether it is true, the score, a critique."""
    rows = [
        "| question | answer | true? | score | valid/K | first critique or raw output |",
        "|---|---|---|---|---|---|",
    ]
    for inst, j in zip(instances, judgements, strict=True):
        score = "-" if j.score is None else f"{j.score:g}"
        first = j.samples[0]
        shown = first.critique if first.format_ok else f"(malformed) {first.text}"
        rows.append(
            f"| {_cell(inst.question, 50)} | {_cell(inst.predicted_answer, 30)} | "
            f"{'yes' if inst.meta['answer_is_true'] else 'no'} | {score} | "
            f"{j.n_valid}/{len(j.samples)} | {_cell(shown)} |"
        )
    return "\n".join(rows)


def score_answers(cfg: DemoConfig, model, memory: EpisodeMemory, instances: list[EQAInstance]):
    """Judgements of every answer by ``model`` (an ``EQARewardModel``)."""
    from habitat_eqarm.cli.common import progress_bar

    judgements = []
    with progress_bar(len(instances), f"scoring K={cfg.k}") as bar:
        for start in range(0, len(instances), 2):  # a question's two answers in one batch
            pair = instances[start : start + 2]
            judgements += model.score(
                pair, scoring(cfg), seed=cfg.seed + start, memories=[memory] * len(pair)
            )
            bar.update(len(pair))
    return judgements


def run_gym(cfg: DemoConfig, model, memory: EpisodeMemory, questions: list[EQAInstance]) -> str:
    """Play each question twice in ``EMEQAEnv`` wrapped by ``EQARMReward``; a Markdown table.

    A scripted agent watches the whole episode, then answers (true answer, then wrong one);
    the wrapper records the stream (bounded to 32 frames), scores the answer and returns the
    reward. This is the path an RL agent's rewards take. ``model`` is the ``EQARewardModel``
    the answers were scored with (the wrapper does not close it).
    """
    from habitat_eqarm.envs import EMEQAEnv
    from habitat_eqarm.envs.agents import ScriptedAgent
    from habitat_eqarm.rewards.wrapper import EQARMReward

    questions = questions[:3]
    memories = {q.episode_id: memory for q in questions}
    env = EMEQAEnv(questions, memories=memories, mode="stream")
    wrapped = EQARMReward(env, model, config=scoring(cfg), max_frames=32)
    rows = [
        "| question | answer | reward | status | frames seen | latency (s) |",
        "|---|---|---|---|---|---|",
    ]
    for q in questions:
        for answer in (q.gt_answer or "", wrong_answer(q, questions)):
            agent = ScriptedAgent(lambda qid, text, a=answer: a, watch_frames=len(memory))
            obs, info = wrapped.reset(seed=cfg.seed, options={"question_id": q.question_id})
            done = False
            while not done:
                obs, reward, terminated, truncated, info = wrapped.step(agent.act(obs, info))
                done = terminated or truncated
            details = info["eqarm"]
            latency = details.get("latency_s", 0.0)
            rows.append(
                f"| {_cell(q.question, 50)} | {_cell(answer, 30)} | {reward:.2f} | "
                f"{details['status']} | {wrapped.recorder.steps} | {latency:.2f} |"
            )
    wrapped.close()
    return "\n".join(rows)


def main(cfg: DemoConfig) -> int:
    """Run the demo (see module doc); returns 0."""
    out = Path(cfg.out)
    t0 = time.perf_counter()
    memory, questions, origin = load_demo_episode(cfg)
    t1 = time.perf_counter()
    indices = memory.keyframes(cfg.num_keyframes, cfg.keyframe_method)
    t2 = time.perf_counter()
    frames = memory.frames(indices)
    labels = [f"#{i}" + (f"  t={i / memory.fps:.1f}s" if memory.fps else "") for i in indices]
    sheet = contact_sheet(frames, labels, title=f"{origin}: {cfg.keyframe_method} keyframes")
    save_image(sheet, out / "contact_sheet.png")
    atomic_write_text(out / "questions.md", questions_table(questions) + "\n")
    instances = [
        answered(q, answer, n, indices)
        for q in questions
        for n, answer in enumerate([q.gt_answer or "", wrong_answer(q, questions)])
    ]
    t3 = time.perf_counter()
    judgements, gym_table, model_name, untrained = [], "", "", False
    t4 = t3
    if instances:  # one model for both: scored answers, then the gym wrapper
        from habitat_eqarm.cli.common import resolve_model
        from habitat_eqarm.rewards.model import EQARewardModel

        model_name, untrained = resolve_model(cfg.model)
        with EQARewardModel.from_pretrained(model_name, cfg.backend) as model:
            judgements = score_answers(cfg, model, memory, instances)
            t4 = time.perf_counter()
            gym_table = run_gym(cfg, model, memory, questions)
    t5 = time.perf_counter()
    table = scores_table(instances, judgements)
    header = f"{origin}: {len(memory)} frames" + (f" at {memory.fps:.1f} fps" if memory.fps else "")
    caveat = (
        "\n**The model is the untrained tiny default: scores are meaningless.**\n"
        if untrained
        else ""
    )
    report = (
        f"# EQA-RM demo\n\n{header}\n\n![keyframes](contact_sheet.png)\n\n"
        f"{cfg.keyframe_method} keyframes: {indices}\n\nReward model: `{model_name}`, "
        f"K = {cfg.k} samples, {cfg.aggregate} of the valid scores.\n{caveat}\n{table}\n"
        f"\n## As an RL reward: EMEQAEnv + EQARMReward\n\n{gym_table}\n"
    )
    atomic_write_text(out / "report.md", report)
    summary = {
        "origin": origin,
        "frames": len(memory),
        "fps": memory.fps,
        "frame_size": list(frames.shape[1:3][::-1]),
        "keyframe_method": cfg.keyframe_method,
        "keyframes": indices,
        "model": model_name,
        "untrained_default_model": untrained,
        "seconds": {"open": t1 - t0, "keyframes": t2 - t1, "scoring": t4 - t3, "gym": t5 - t4},
        "questions": [q.to_dict() for q in questions],
        "answers": [inst.to_dict() for inst in instances],
        "judgements": [j.to_dict() for j in judgements],
        "config": asdict(cfg),
    }
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=2) + "\n")
    print(f"\n{header}\n{cfg.keyframe_method} keyframes: {indices}  (picked in {t2 - t1:.3f}s)")
    print(
        f"scored {len(instances)} answers x K={cfg.k} with {model_name} in {t4 - t3:.1f}s{caveat}"
    )
    print(f"\n{table}\n")
    if gym_table:
        print(f"As an RL reward (EMEQAEnv + EQARMReward, scripted agent), {t5 - t4:.1f}s:")
        print(f"{gym_table}\n")
    print(f"report: {out / 'report.md'}  keyframes: {out / 'contact_sheet.png'}")
    return 0
