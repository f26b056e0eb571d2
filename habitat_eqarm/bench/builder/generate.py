"""Stage 1 of EQARewardBench (docs/method.md §2): N responses per OpenEQA question from a generator
VLM.

Each response is an :class:`EQAInstance` with id ``<question id>#<n>`` (n = 0..N-1), its
reasoning steps and predicted answer, the keyframes the generator saw, and in ``meta`` how it
was made (``meta["generation"]``). The responses of one question are generated in order, so
the mix of right and wrong answers can be steered: with ``wrong_answers="adaptive"`` response
n asks for a plausible wrong answer (``prompts.WRONG_ANSWER_EXTRA``) when every response before it
matched the ground-truth answer; ``"alternate"`` asks on every odd n; ``"none"`` never asks.

Output: one JSONL journal (:mod:`~habitat_eqarm.bench.builder.journal`) that a re-run or a run
after ``kill -9`` continues; questions whose episode is missing or unreadable are skipped and
reported in ``<out>.report.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from habitat_eqarm.bench.builder.common import (
    ProgressFactory,
    StageReport,
    StageRun,
    error_text,
    no_progress,
    public_kwargs,
    run_stage,
    split_list,
)
from habitat_eqarm.data.openeqa import find_openeqa_dir, load_openeqa
from habitat_eqarm.data.schema import SOURCES, EQAInstance, response_id
from habitat_eqarm.rewards.backends.base import GenerationRequest
from habitat_eqarm.rewards.parsing import ParsedResponse, parse_response
from habitat_eqarm.rewards.prompts import GENERATOR_PROMPT, build_messages
from habitat_eqarm.rewards.ray_engine import EngineOptions, check_engine
from habitat_eqarm.rewards.textmatch import answers_match

__all__ = ["GenerateConfig", "ParsedResponse", "parse_response", "run_generate"]

WRONG_ANSWER_POLICIES = ("adaptive", "alternate", "none")


@dataclass
class GenerateConfig(EngineOptions):
    """Options of `eqarm bench generate`."""

    model: str = field(metadata={"help": "generator: local path, hub id or API model name"})
    questions: str | None = field(
        default=None, metadata={"help": "OpenEQA questions JSON (default: open-eqa-v0.json found)"}
    )
    data_root: str | None = field(
        default=None, metadata={"help": "folder of episode histories (default: the JSON's folder)"}
    )
    out: str = field(default="outputs/bench/responses.jsonl", metadata={"help": "output JSONL"})
    backend: str = field(default="hf", metadata={"help": "registered backend: hf, openai, ..."})
    backend_kwargs: str | None = field(
        default=None, metadata={"help": "JSON object of backend options (e.g. base_url)"}
    )
    n_responses: int = field(default=4, metadata={"help": "responses per question"})
    wrong_answers: str = field(default="adaptive", metadata={"help": "adaptive, alternate, none"})
    ids: str | None = field(
        default=None, metadata={"help": "question ids (comma-separated) or a JSON file of ids"}
    )
    categories: str | None = field(default=None, metadata={"help": "comma-separated categories"})
    sources: str | None = field(default=None, metadata={"help": "comma-separated: hm3d, scannet"})
    limit: int | None = field(default=None, metadata={"help": "first N selected questions only"})
    num_keyframes: int = 5
    keyframe_method: str = "uniform"
    frames_as: str = field(default="images", metadata={"help": "images or video"})
    temperature: float = 0.8
    top_p: float = 0.9
    max_new_tokens: int = 512
    max_attempts: int = field(default=2, metadata={"help": "tries per malformed response"})
    batch_size: int = field(default=4, metadata={"help": "questions per backend call"})
    seed: int = 0


def wants_wrong_answer(policy: str, n: int, previous_matches: Sequence[bool | None]) -> bool:
    """Whether response ``n`` should ask for a plausible wrong answer (docs/method.md §2's mix).

    ``previous_matches``: for responses 0..n-1, whether each matched the ground truth (None
    for one without an answer). ``adaptive`` asks when there are previous responses and all
    of them matched; ``alternate`` asks on odd n; ``none`` never asks.
    """
    if policy not in WRONG_ANSWER_POLICIES:
        raise ValueError(f"wrong_answers must be one of {', '.join(WRONG_ANSWER_POLICIES)}")
    if policy == "alternate":
        return n % 2 == 1
    if policy == "adaptive":
        return n > 0 and all(m is True for m in previous_matches)
    return False


def _ids_option(value: str | None) -> list[str] | str | None:
    if not value:
        return None
    if value.endswith(".json") and Path(value).is_file():
        return value  # load_openeqa reads a JSON list of ids
    return split_list(value)


def _check_choices(option: str, given: list[str], known: Sequence[str]) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"--{option}: unknown {', '.join(unknown)} (known: {', '.join(known)})")


def select_questions(cfg: GenerateConfig, report: StageReport) -> list[EQAInstance]:
    """The OpenEQA questions in scope (ids, categories, sources, limit) with an episode found.

    Questions whose episode history is not under ``data_root`` are skipped and reported.
    """
    path = Path(cfg.questions) if cfg.questions else None
    if path is None:
        found = find_openeqa_dir()
        if found is None:
            raise ValueError("--questions not given and no open-eqa-v0.json found")
        path = found / "open-eqa-v0.json"
    data_root = Path(cfg.data_root) if cfg.data_root else path.parent
    questions = load_openeqa(path, data_root, _ids_option(cfg.ids), on_missing="keep")
    categories, sources = split_list(cfg.categories), split_list(cfg.sources)
    if categories:
        _check_choices("categories", categories, sorted({q.category for q in questions}))
        questions = [q for q in questions if q.category in categories]
    if sources:
        _check_choices("sources", sources, SOURCES)
        questions = [q for q in questions if q.source in sources]
    questions = questions[: cfg.limit] if cfg.limit is not None else questions
    kept = []
    for q in questions:
        if q.episode_path is None:
            report.skip(q.question_id, f"episode not found: {q.episode_id} under {data_root}")
        else:
            kept.append(q)
    return kept


def check_config(cfg: GenerateConfig) -> None:
    """Refuse bad options before any work."""
    check_engine(cfg)
    if cfg.n_responses < 1 or cfg.max_attempts < 1 or cfg.batch_size < 1:
        raise ValueError("--n_responses, --max_attempts and --batch_size must be at least 1")
    if cfg.frames_as not in ("images", "video"):
        raise ValueError(f"--frames_as must be images or video, got {cfg.frames_as!r}")
    wants_wrong_answer(cfg.wrong_answers, 0, [])


def settings_of(cfg: GenerateConfig) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    keys = ("model", "backend", "temperature", "top_p", "max_new_tokens", "num_keyframes")
    keys += ("keyframe_method", "frames_as", "wrong_answers", "seed")
    return {
        "stage": "generate",
        "prompt_id": GENERATOR_PROMPT.id,
        **{k: getattr(cfg, k) for k in keys},
    }


def run_generate(cfg: GenerateConfig, progress: ProgressFactory = no_progress) -> StageReport:
    """Generate every missing response and return what was done (also written beside ``out``).

    ``progress(total, desc)`` makes the progress bar (e.g. ``cli.common.progress_bar``).
    """
    check_config(cfg)
    report = StageReport("generate")
    questions = select_questions(cfg, report)

    def outputs(q: EQAInstance) -> list[str]:
        return [response_id(q.question_id, n) for n in range(cfg.n_responses)]

    records = run_stage(cfg, report, questions, outputs, _Run, settings_of(cfg), progress)
    _tally(report, records)
    report.write(Path(cfg.out))
    return report


def _tally(report: StageReport, records: list[dict[str, Any]]) -> None:
    gens = [r["meta"]["generation"] for r in records]
    report.counts["responses"] = len(gens)
    report.counts["well-formed"] = sum(g["format_ok"] for g in gens)
    report.counts["malformed (no usable answer)"] = sum(not g["usable"] for g in gens)
    report.counts["asked for a wrong answer"] = sum(g["asked_wrong"] for g in gens)
    report.counts["matching the GT answer"] = sum(g["matches_gt"] is True for g in gens)
    report.counts["not matching the GT answer"] = sum(g["matches_gt"] is False for g in gens)


class _Run(StageRun):
    """One generate run: the journal to append to, the backend, episode readers."""

    def chunk(self, questions: list[EQAInstance]) -> None:
        """All missing responses of a few questions, response n of each in one backend call."""
        frames: dict[str, tuple[list[int], Any]] = {}
        for q in questions:
            try:
                memory = self.memories.get(q.episode_path)
                indices = memory.keyframes(self.cfg.num_keyframes, self.cfg.keyframe_method)
                frames[q.question_id] = (list(indices), memory.frames(indices))
            except Exception as err:
                self.report.skip(q.question_id, f"unreadable episode: {error_text(err)}")
        live = [q for q in questions if q.question_id in frames]
        for n in range(self.cfg.n_responses):
            batch = [q for q in live if response_id(q.question_id, n) not in self.journal]
            failed = self.respond(batch, n, frames)
            live = [q for q in live if q.question_id not in failed]

    def respond(self, batch: list[EQAInstance], n: int, frames: dict) -> set[str]:
        """Response ``n`` for each question of ``batch`` (re-asked while unusable); the ids of
        the questions whose generation failed."""
        wrong = {q.question_id: self.asks_wrong(q, n) for q in batch}
        as_video = self.cfg.frames_as == "video"
        requests = {
            response_id(q.question_id, n): GenerationRequest(
                build_messages(
                    GENERATOR_PROMPT,
                    q,
                    len(frames[q.question_id][0]),
                    as_video=as_video,
                    wrong_answer=wrong[q.question_id],
                ),
                frames[q.question_id][1],
                as_video=as_video,
                prompt_id=GENERATOR_PROMPT.id,
            )
            for q in batch
        }
        answers = self.ask(
            requests,
            parse=lambda _, result, attempt: (result.texts[0], attempt),
            retry=lambda answer: not parse_response(answer[0]).usable,
            what="generation",
        )
        failed: set[str] = set()
        for q in batch:
            qid = q.question_id
            if response_id(qid, n) not in answers:
                failed.add(qid)
                continue
            text, attempts = answers[response_id(qid, n)]
            self.add(self.record(q, n, frames[qid][0], text, attempts, wrong[qid]))
        return failed

    def asks_wrong(self, q: EQAInstance, n: int) -> bool:
        """Whether response n of ``q`` asks for a wrong answer, from responses 0..n-1."""
        previous = []
        for m in range(n):
            record = self.journal.entries.get(response_id(q.question_id, m))
            previous.append(record["meta"]["generation"]["matches_gt"] if record else None)
        return wants_wrong_answer(self.cfg.wrong_answers, n, previous)

    def record(
        self, q: EQAInstance, n: int, indices: list[int], text: str, attempts: int, wrong: bool
    ) -> dict[str, Any]:
        """The finished response as an instance dict."""
        parsed = parse_response(text)
        references = [q.gt_answer or "", *q.meta.get("extra_answers", [])]
        matches = answers_match(parsed.answer, references) if parsed.usable else None
        generation = {
            "model": self.cfg.model,
            "backend": self.cfg.backend,
            "backend_kwargs": public_kwargs(self.cfg.backend_kwargs),
            "prompt_id": GENERATOR_PROMPT.id,
            "response_index": n,
            "asked_wrong": wrong,
            "format_ok": parsed.format_ok,
            "usable": parsed.usable,
            "matches_gt": matches,
            "attempts": attempts,
            "text": text,
        }
        inst = EQAInstance(
            question_id=response_id(q.question_id, n),
            question=q.question,
            category=q.category,
            source=q.source,
            episode_id=q.episode_id,
            gt_answer=q.gt_answer,
            predicted_answer=parsed.answer,
            reasoning_steps=parsed.steps,
            episode_path=q.episode_path,
            keyframe_indices=indices,
            meta={**q.meta, "openeqa_question_id": q.question_id, "generation": generation},
        )
        return inst.to_dict()
