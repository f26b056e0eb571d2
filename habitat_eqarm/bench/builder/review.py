"""Stage 3 of EQARewardBench (docs/method.md §2): humans verify the judge's scores.

A reviewer accepts the judge's score, edits it, or rejects the response. Every decision (and
every undo) is one line of an append-only event log, ``<out>.decisions.jsonl``, written like
the stage journals (whole lines, fsync, torn tail cut): a reviewer who closes the page, or a
server killed at any moment, resumes exactly where they were. After each event the outputs
are rewritten atomically from the log: ``<out>`` holds the verified instances (``gt_score`` =
the accepted or edited score, ``meta["review"]`` says which), ``<out stem>.rejected.jsonl`` the
rejected ones.

Several reviewers split the work with ``reviewer=i, of=n``: reviewer i gets the OpenEQA
questions whose id hashes to i modulo n (all responses to a question go to one reviewer), each
writing its own files; ``eqarm bench split`` reads them all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from habitat_eqarm.bench.builder.common import read_instances
from habitat_eqarm.bench.builder.journal import AppendLog
from habitat_eqarm.data.schema import (
    SCORE_RANGE,
    EQAInstance,
    base_question_id,
    check_unique_ids,
    write_jsonl,
)

ACTIONS = ("accept", "edit", "reject")
STATUS = {"accept": "accepted", "edit": "edited", "reject": "rejected"}


@dataclass
class ReviewConfig:
    """Options of `eqarm bench review`."""

    data: str = field(default="outputs/bench/judged.jsonl", metadata={"help": "judged JSONL"})
    out: str | None = field(
        default=None,
        metadata={"help": "verified JSONL (default: verified[.r<i>of<n>].jsonl beside data)"},
    )
    reviewer: int = field(default=0, metadata={"help": "this reviewer's number, 0..of-1"})
    of: int = field(default=1, metadata={"help": "how many reviewers share the work"})
    name: str = field(default="", metadata={"help": "reviewer's name, recorded per decision"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to serve on (loopback)"})
    port: int = field(default=8765, metadata={"help": "port (0: any free port)"})
    frame_width: int = field(default=480, metadata={"help": "keyframe width on the page (px)"})
    open_browser: bool = field(default=False, metadata={"help": "open the page in a browser"})


def shard_of(question_id: str, n: int) -> int:
    """The reviewer (0..n-1) of an instance: a stable hash of its OpenEQA question id."""
    digest = hashlib.sha256(base_question_id(question_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def default_out(cfg: ReviewConfig) -> Path:
    """Where the verified instances go when ``out`` is not given."""
    if cfg.out:
        return Path(cfg.out)
    suffix = "" if cfg.of == 1 else f".r{cfg.reviewer}of{cfg.of}"
    return Path(cfg.data).with_name(f"verified{suffix}.jsonl")


def load_shard(cfg: ReviewConfig) -> list[EQAInstance]:
    """This reviewer's instances, in file order."""
    if cfg.of < 1 or not 0 <= cfg.reviewer < cfg.of:
        raise ValueError(f"--reviewer must be in 0..{cfg.of - 1} (--of {cfg.of})")
    items = [i for i in read_instances(cfg.data) if shard_of(i.question_id, cfg.of) == cfg.reviewer]
    check_unique_ids([(cfg.data, items)])
    return items


class ReviewError(ValueError):
    """A decision the session cannot take (unknown item, bad score, nothing to undo)."""


class ReviewSession:
    """One reviewer's items, decisions and outputs; see the module doc for the files.

    ``decide``/``undo`` append an event and rewrite the outputs; the state is always the
    replay of the event log, so a restarted session shows exactly what was decided.
    """

    def __init__(self, items: list[EQAInstance], out: Path, reviewer: str = "") -> None:
        self.items = items
        self.index = {inst.question_id: i for i, inst in enumerate(items)}
        self.out = Path(out)
        self.rejected_path = self.out.with_name(self.out.stem + ".rejected.jsonl")
        self.reviewer = reviewer
        self.log = AppendLog(self.out.with_name(self.out.name + ".decisions.jsonl")).open()
        self.events = [record for _, record in self.log.records()]
        self.stack: list[dict[str, Any]] = []
        for event in self.events:
            self._apply(event)
        self.write_outputs()

    # -- state --------------------------------------------------------------------------------

    def _apply(self, event: dict[str, Any]) -> None:
        if event.get("action") == "undo":
            if self.stack and self.stack[-1]["seq"] == event.get("undoes"):
                self.stack.pop()
        elif event.get("id") in self.index:  # decisions on items no longer here are ignored
            self.stack.append(event)

    @property
    def decisions(self) -> dict[str, dict[str, Any]]:
        """Each decided item's effective decision (a later one overrides an earlier one)."""
        return {event["id"]: event for event in self.stack}

    def progress(self) -> dict[str, int]:
        """Counts of decided items by status, and the total."""
        decisions = self.decisions
        counts = {status: 0 for status in STATUS.values()}
        for event in decisions.values():
            counts[STATUS[event["action"]]] += 1
        return {"total": len(self.items), "done": len(decisions), **counts}

    # -- actions ------------------------------------------------------------------------------

    def decide(self, item_id: str, action: str, score: int | None = None) -> dict[str, Any]:
        """Accept, edit (with ``score``) or reject an item; returns the event."""
        inst = self._item(item_id)
        if action not in ACTIONS:
            raise ReviewError(f"unknown action {action!r} (use {', '.join(ACTIONS)})")
        if action == "accept" and inst.gt_score is None:
            raise ReviewError(f"{item_id}: the judge gave no score; enter one instead")
        if action == "edit":
            score = _check_score(score)
        elif action == "accept":
            score = inst.gt_score
        else:
            score = None
        return self._record({"id": item_id, "action": action, "score": score})

    def undo(self) -> dict[str, Any]:
        """Take back the latest decision still in effect; returns the undone decision."""
        if not self.stack:
            raise ReviewError("nothing to undo")
        undone = self.stack[-1]
        self._record({"action": "undo", "undoes": undone["seq"], "id": undone["id"]})
        return undone

    def _item(self, item_id: str) -> EQAInstance:
        if item_id not in self.index:
            raise ReviewError(f"no item {item_id!r} in this reviewer's share")
        return self.items[self.index[item_id]]

    def _record(self, event: dict[str, Any]) -> dict[str, Any]:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        event = {"seq": len(self.events), **event, "reviewer": self.reviewer, "time": now}
        self.log.append(event)
        self.events.append(event)
        self._apply(event)
        self.write_outputs()
        return event

    # -- outputs ------------------------------------------------------------------------------

    def write_outputs(self) -> None:
        """Rewrite the verified and rejected files from the current decisions (atomically)."""
        verified, rejected = [], []
        decisions = self.decisions
        for inst in self.items:
            event = decisions.get(inst.question_id)
            if event is None:
                continue
            out = EQAInstance.from_dict(inst.to_dict())
            out.meta["review"] = {
                "status": STATUS[event["action"]],
                "judge_score": inst.gt_score,
                "reviewer": event["reviewer"],
                "time": event["time"],
            }
            if event["action"] == "reject":
                rejected.append(out)
            else:
                out.gt_score = event["score"]
                verified.append(out)
        write_jsonl(self.out, verified)
        write_jsonl(self.rejected_path, rejected)

    def close(self) -> None:
        """Release the event log."""
        self.log.close()

    # -- what the page shows ------------------------------------------------------------------

    def item_view(self, i: int) -> dict[str, Any]:
        """The fields of item ``i`` that the page shows."""
        inst = self.items[i]
        gen = inst.meta.get("generation", {})
        judge = inst.meta.get("judge", {})
        llm = inst.meta.get("llm_match", {})
        return {
            "index": i,
            "id": inst.question_id,
            "question": inst.question,
            "category": inst.category,
            "source": inst.source,
            "episode": inst.episode_id,
            "gt_answer": inst.gt_answer,
            "extra_answers": inst.meta.get("extra_answers", []),
            "answer": inst.predicted_answer,
            "steps": inst.reasoning_steps,
            "raw": None if gen.get("usable", True) else gen.get("text"),
            "asked_wrong": gen.get("asked_wrong"),
            "critique": inst.gt_critique,
            "judge_score": inst.gt_score,
            "judge_raw": (judge.get("texts") or [None])[0] if inst.gt_score is None else None,
            "leak": judge.get("leak"),
            "llm_match": llm.get("mark"),
            "n_frames": len(inst.keyframe_indices) or 5,
        }

    def state(self) -> dict[str, Any]:
        """Everything the page needs at start-up."""
        decisions = {
            item_id: {"action": e["action"], "score": e["score"]}
            for item_id, e in self.decisions.items()
        }
        return {
            "reviewer": self.reviewer,
            "items": [self.item_view(i) for i in range(len(self.items))],
            "decisions": decisions,
            "progress": self.progress(),
            "out": str(self.out),
        }


def _check_score(score: Any) -> int:
    lo, hi = SCORE_RANGE
    if isinstance(score, str) and score.strip().lstrip("-").isdigit():
        score = int(score)
    if not isinstance(score, int) or isinstance(score, bool) or not lo <= score <= hi:
        raise ReviewError(f"a score must be an integer {lo}..{hi}, got {score!r}")
    return score
