"""Stage 2 of EQARewardBench (docs/method.md §2): ground-truth scores and critiques from a judge
VLM.

The judge sees the keyframes the generator saw, the question, the ground-truth answer, the
reasoning trace and the predicted answer (prompt ``eqarm-judge-v1``) and writes a critique and
a 0-10 score. ``k > 1`` samples are aggregated (majority by default) and rounded half up. A
critique that reveals the ground-truth answer is flagged (``meta["judge"]["leak"]``) for the
reviewers, since the critique must never state it.

``mode="llm_match"`` (or ``"both"``) also asks, text only, for a 1-5 mark of answer agreement in
the manner of OpenEQA's LLM-match (prompt ``eqarm-llm-match-v1``, our wording), reported as
OpenEQA reports it: the mean of ``(mark - 1) / 4`` in percent, so a builder can compare a
generator with OpenEQA's published numbers.

Output: a JSONL journal of judged instances (``gt_score`` = the judge's score until review),
resumable like every stage; ``<out>.report.json`` / ``.md`` hold the counts and summaries.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from habitat_eqarm.bench.builder.common import (
    ProgressFactory,
    StageReport,
    StageRun,
    error_text,
    no_progress,
    public_kwargs,
    read_instances,
    run_stage,
)
from habitat_eqarm.data.schema import EQAInstance, check_unique_ids
from habitat_eqarm.rewards.backends.base import GenerationRequest, GenerationResult
from habitat_eqarm.rewards.model import EQARewardModel, Judgement, judgement_from_texts
from habitat_eqarm.rewards.parsing import aggregate_scores
from habitat_eqarm.rewards.prompts import JUDGE_PROMPT, Prompt
from habitat_eqarm.rewards.ray_engine import EngineOptions, check_engine
from habitat_eqarm.rewards.textmatch import critique_leak

MODES = ("score", "llm_match", "both")

#: Text-only answer agreement on OpenEQA's 1-5 scale (our wording; see the module doc).
LLM_MATCH_PROMPT = Prompt(
    id="eqarm-llm-match-v1",
    system=(
        "You compare an answer to a question about an indoor scene with reference answers "
        "written by people who saw the scene."
    ),
    user=(
        "Question: {question}\n\n"
        "Reference answer(s): {references}\n\n"
        "Answer to grade: {answer}\n\n"
        "How well does the answer agree with the reference, from 1 to 5?\n"
        "5: same meaning (wording, synonyms and extra correct detail do not matter);\n"
        "4: right, with a small inaccuracy or omission;\n"
        "3: partly right;\n"
        "2: mostly wrong, with a small correct part;\n"
        "1: wrong, unrelated, or no answer.\n\n"
        "Reply with the mark only, in this format: <mark>N</mark>"
    ),
)


@dataclass
class JudgeConfig(EngineOptions):
    """Options of `eqarm bench judge`."""

    model: str = field(metadata={"help": "judge: local path, hub id or API model name"})
    data: str = field(default="outputs/bench/responses.jsonl", metadata={"help": "responses"})
    out: str = field(default="outputs/bench/judged.jsonl", metadata={"help": "output JSONL"})
    backend: str = field(default="hf", metadata={"help": "registered backend: hf, openai, ..."})
    backend_kwargs: str | None = field(
        default=None, metadata={"help": "JSON object of backend options (e.g. base_url)"}
    )
    mode: str = field(default="score", metadata={"help": "score, llm_match or both"})
    k: int = field(default=1, metadata={"help": "judge samples per response, aggregated"})
    aggregate: str = field(default="majority", metadata={"help": "mean, majority, median"})
    temperature: float = 0.2
    top_p: float = 0.9
    max_new_tokens: int = 512
    max_attempts: int = field(default=2, metadata={"help": "tries while no sample parses"})
    include_malformed: bool = field(
        default=False, metadata={"help": "also judge responses without a usable answer"}
    )
    num_keyframes: int = field(default=5, metadata={"help": "for responses without keyframes"})
    keyframe_method: str = "uniform"
    frames_as: str = field(default="images", metadata={"help": "images or video"})
    batch_size: int = 4
    limit: int | None = field(default=None, metadata={"help": "first N responses only"})
    seed: int = 0


_MARK_STRICT = re.compile(r"\A\s*<mark>\s*([1-5])\s*</mark>\s*\Z")
_MARK_LOOSE = re.compile(r"<mark>\s*([1-5])\s*</mark>|\bmark\s*:?\s*([1-5])\b", re.IGNORECASE)


def parse_mark(text: str) -> tuple[int | None, bool]:
    """``(mark, format_ok)`` of an LLM-match reply; the mark is None unless exactly one is given."""
    strict = _MARK_STRICT.match(text)
    if strict:
        return int(strict.group(1)), True
    marks = {int(a or b) for a, b in _MARK_LOOSE.findall(text)}
    return (marks.pop() if len(marks) == 1 else None), False


def llm_match_score(marks: list[int | None]) -> float | None:
    """OpenEQA's LLM-match figure: mean of ``(mark - 1) / 4`` in percent (None marks skipped)."""
    valid = [m for m in marks if m is not None]
    return 100.0 * sum((m - 1) / 4 for m in valid) / len(valid) if valid else None


def round_score(score: float | None) -> int | None:
    """An aggregated 0..10 score as the integer ground truth (half up)."""
    return None if score is None else math.floor(score + 0.5)


def chosen_critique(judgement: Judgement) -> str | None:
    """The critique of the valid sample whose score is nearest the aggregate (first on ties)."""
    valid = [s for s in judgement.samples if s.score is not None]
    if not valid or judgement.score is None:
        return None
    return min(valid, key=lambda s: abs(s.score - judgement.score)).critique


def check_config(cfg: JudgeConfig) -> None:
    """Refuse bad options before any work."""
    check_engine(cfg)
    if cfg.mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.k < 1 or cfg.max_attempts < 1 or cfg.batch_size < 1:
        raise ValueError("--k, --max_attempts and --batch_size must be at least 1")
    aggregate_scores([], cfg.aggregate)


def settings_of(cfg: JudgeConfig) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    keys = ("model", "backend", "mode", "k", "aggregate", "temperature", "top_p")
    keys += ("max_new_tokens", "num_keyframes", "keyframe_method", "frames_as", "seed")
    prompts = {"prompt_id": JUDGE_PROMPT.id, "llm_match_prompt_id": LLM_MATCH_PROMPT.id}
    return {"stage": "judge", **prompts, **{k: getattr(cfg, k) for k in keys}}


def select_responses(cfg: JudgeConfig, report: StageReport) -> list[EQAInstance]:
    """The responses to judge: unique ids, a GT answer, and (unless asked) a usable answer."""
    instances = read_instances(cfg.data)
    instances = instances[: cfg.limit] if cfg.limit is not None else instances
    check_unique_ids([(cfg.data, instances)])
    out = []
    for inst in instances:
        usable = inst.meta.get("generation", {}).get("usable", bool(inst.predicted_answer))
        if not inst.gt_answer:
            report.skip(inst.question_id, "no GT answer: the judge needs one")
        elif not usable and not cfg.include_malformed:
            report.skip(inst.question_id, "malformed response: no usable answer")
        else:
            out.append(inst)
    return out


def run_judge(cfg: JudgeConfig, progress: ProgressFactory = no_progress) -> StageReport:
    """Judge every response not judged yet; returns what was done (also written beside ``out``)."""
    check_config(cfg)
    report = StageReport("judge")
    instances = select_responses(cfg, report)
    records = run_stage(
        cfg, report, instances, lambda i: [i.question_id], _Run, settings_of(cfg), progress
    )
    _summarise(report, records)
    report.write(Path(cfg.out))
    return report


def _summarise(report: StageReport, records: list[dict[str, Any]]) -> None:
    judged = [r for r in records if "judge" in r["meta"]]
    report.counts["judged (GT score)"] = sum(r["gt_score"] is not None for r in judged)
    report.counts["judge output malformed"] = sum(r["gt_score"] is None for r in judged)
    report.counts["critiques flagged: leak GT answer"] = sum(
        bool(r["meta"]["judge"]["leak"]) for r in judged
    )
    for label, wanted in (("matching", True), ("not matching", False)):
        scores = [
            r["gt_score"]
            for r in judged
            if r["gt_score"] is not None
            and r["meta"].get("generation", {}).get("matches_gt") is wanted
        ]
        if scores:
            report.counts[f"mean GT score, answers {label} the GT"] = round(
                sum(scores) / len(scores), 2
            )
    matched = [r for r in records if "llm_match" in r["meta"]]
    if matched:
        report.tables["LLM-match (OpenEQA scale)"] = llm_match_table(matched)
        marks = [r["meta"]["llm_match"]["mark"] for r in matched]
        report.summary["llm_match_score"] = llm_match_score(marks)
        report.summary["llm_match_unparsed"] = sum(m is None for m in marks)


def llm_match_table(records: list[dict[str, Any]]) -> str:
    """Markdown: LLM-match score (mean of (mark-1)/4, %) overall, by source and by category."""
    groups: dict[str, list[int | None]] = {"overall": []}
    for r in records:
        mark = r["meta"]["llm_match"]["mark"]
        groups["overall"].append(mark)
        groups.setdefault(f"source: {r['source']}", []).append(mark)
        groups.setdefault(f"category: {r['category']}", []).append(mark)
    rows = []
    for name, marks in groups.items():
        score = llm_match_score(marks)
        shown = "n/a" if score is None else f"{score:.1f}"
        rows.append(f"| {name} | {len(marks)} | {sum(m is None for m in marks)} | {shown} |")
    header = "| group | responses | unparsed | LLM-match % |\n|---|---:|---:|---:|\n"
    return header + "\n".join(rows) + "\n"


@dataclass  # again, so that __init__ calls __post_init__
class _Run(StageRun):
    """One judge run: journal, backend, and the reward-model wrapper for the judge prompt."""

    def __post_init__(self) -> None:
        self.judge = EQARewardModel(
            self.backend,
            prompt=JUDGE_PROMPT,
            num_keyframes=self.cfg.num_keyframes,
            keyframe_method=self.cfg.keyframe_method,
            frames_as=self.cfg.frames_as,
        )

    def chunk(self, batch: list[EQAInstance]) -> None:
        """Judge a few responses and append each finished one (a failed one is reported)."""
        wants_score, wants_mark = self.cfg.mode != "llm_match", self.cfg.mode != "score"
        scored = self.score(batch) if wants_score else {}
        ready = [i for i in batch if not wants_score or i.question_id in scored]
        marks = self.llm_match(ready) if wants_mark else {}
        for inst in ready:
            if wants_mark and inst.question_id not in marks:
                continue
            self.add(self.record(inst, scored.get(inst.question_id), marks.get(inst.question_id)))

    def score(self, batch: list[EQAInstance]) -> dict[str, tuple[Judgement, int]]:
        """The judge's K samples per response, re-asked while none of them parses."""
        built: dict[str, tuple[GenerationRequest, list[int]]] = {}
        for inst in batch:
            try:
                memory = self.memories.get(inst.episode_path) if inst.episode_path else None
                built[inst.question_id] = self.judge.request_for(inst, memory)
            except Exception as err:
                self.report.skip(inst.question_id, f"unreadable episode: {error_text(err)}")
        by_id = {i.question_id: i for i in batch}

        def parse(qid: str, result: GenerationResult, attempt: int) -> tuple[Judgement, int]:
            return self.judgement(by_id[qid], result.texts, built[qid][1]), attempt

        return self.ask(
            {qid: request for qid, (request, _) in built.items()},
            parse,
            retry=lambda scored: scored[0].n_valid == 0,
            what="judge",
            k=self.cfg.k,
        )

    def judgement(self, inst: EQAInstance, texts: list[str], indices: list[int]) -> Judgement:
        """Parse the judge's samples for one response."""
        return judgement_from_texts(
            inst,
            texts,
            aggregate=self.cfg.aggregate,
            prompt_id=JUDGE_PROMPT.id,
            model=self.cfg.model,
            keyframe_indices=indices,
        )

    def llm_match(self, batch: list[EQAInstance]) -> dict[str, dict[str, Any]]:
        """A 1-5 mark of answer agreement per response (text only), re-asked while unparsable."""

        def parse(qid: str, result: GenerationResult, attempt: int) -> dict[str, Any]:
            mark, format_ok = parse_mark(result.texts[0])
            return {
                "mark": mark,
                "format_ok": format_ok,
                "attempts": attempt,
                "text": result.texts[0],
                "prompt_id": LLM_MATCH_PROMPT.id,
                "model": self.cfg.model,
            }

        return self.ask(
            {i.question_id: _llm_match_request(i) for i in batch},
            parse,
            retry=lambda answer: answer["mark"] is None,
            what="LLM-match",
            max_new_tokens=32,
        )

    def record(
        self,
        inst: EQAInstance,
        scored: tuple[Judgement, int] | None,
        llm_match: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The judged instance: GT score and critique (provisional until review), and meta."""
        record = inst.to_dict()
        meta = record["meta"]
        if scored is not None:
            judgement, attempts = scored
            critique = chosen_critique(judgement)
            response_text = " ".join([inst.predicted_answer or "", *inst.reasoning_steps])
            references = [inst.gt_answer or ""]
            leak = critique_leak(critique, " ".join(references), response_text)
            record["gt_score"] = round_score(judgement.score)
            record["gt_critique"] = critique
            record["keyframe_indices"] = judgement.keyframe_indices
            meta["judge"] = {
                "model": self.cfg.model,
                "backend": self.cfg.backend,
                "backend_kwargs": public_kwargs(self.cfg.backend_kwargs),
                "prompt_id": JUDGE_PROMPT.id,
                "k": self.cfg.k,
                "aggregate": self.cfg.aggregate,
                "score": judgement.score,
                "scores": judgement.scores,
                "n_valid": judgement.n_valid,
                "attempts": attempts,
                "status": "ok" if judgement.n_valid else "malformed",
                "leak": leak,
                "texts": [s.text for s in judgement.samples],
            }
        if llm_match is not None:
            meta["llm_match"] = llm_match
        return record


def _llm_match_request(inst: EQAInstance) -> GenerationRequest:
    references = [inst.gt_answer or "", *inst.meta.get("extra_answers", [])]
    text = LLM_MATCH_PROMPT.render(
        question=inst.question.strip(),
        references=" | ".join(r.strip() for r in references if r and r.strip()),
        answer=(inst.predicted_answer or "(no answer)").strip(),
    )
    messages = [
        {"role": "system", "content": [{"type": "text", "text": LLM_MATCH_PROMPT.system}]},
        {"role": "user", "content": [{"type": "text", "text": text}]},
    ]
    return GenerationRequest(
        messages=messages,
        frames=np.zeros((0, 1, 1, 3), dtype=np.uint8),  # text only: no frames
        prompt_id=LLM_MATCH_PROMPT.id,
    )
