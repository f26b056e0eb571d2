"""`EQAInstance`: the one record that travels between every stage (bench, training, inference, gym).

An EQA instance is the paper's ``(q, a, z, v)`` (spec §1): question ``q``, the agent's predicted
answer ``a``, its reasoning trace ``z`` (a list of steps) and the episode-memory keyframes ``v``.
A labelled instance adds the ground-truth answer, score (integer 0..10) and the judge's critique.

Storage formats, both exact round trips:

* JSONL, one instance per line, keys = the dataclass field names (``meta`` as a JSON object).
* ``datasets.Dataset`` with :data:`DATASET_FEATURES`; ``meta`` is stored as a JSON string because
  Arrow needs one schema for every row and ``meta`` is free-form.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from habitat_eqarm.data.io import atomic_write_text

if TYPE_CHECKING:
    import datasets

SOURCES = ("hm3d", "scannet", "other")
#: Characters allowed in the envs' text spaces (answers, reasoning, critiques): printable ASCII
#: plus Latin-1 letters.
TEXT_CHARSET = frozenset(string.printable) | frozenset(chr(c) for c in range(0xA0, 0x180))
SCORE_RANGE = (0, 10)
CORRECT_AT = 5.0
"""A response is correct, for calibration, iff its ground-truth score is at least this (0..10)."""

REQUIRED_FIELDS = ("question_id", "question")


class InstanceError(ValueError):
    """An instance record is malformed; the message names the record and the field."""


@dataclass
class EQAInstance:
    """One EQA instance, labelled or not.

    ``episode_path`` is the reference to the episode memory: a folder in OpenEQA's layout or a
    video file, loaded with :meth:`EpisodeMemory.from_path`. ``keyframe_indices`` index into that
    memory. ``gt_score`` is an integer 0..10 (spec §1). ``meta`` holds anything JSON-serialisable
    that a stage wants to carry along (prompt ids, generator names, OpenEQA's extra answers, ...).
    """

    question_id: str
    question: str
    category: str = ""
    source: str = "other"
    episode_id: str = ""
    gt_answer: str | None = None
    predicted_answer: str | None = None
    reasoning_steps: list[str] = field(default_factory=list)
    episode_path: str | None = None
    keyframe_indices: list[int] = field(default_factory=list)
    gt_score: int | None = None
    gt_critique: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_instance(self)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-serialisable dict (lists and dicts copied)."""
        try:
            return json.loads(json.dumps(dataclasses.asdict(self), allow_nan=False))
        except (TypeError, ValueError) as err:
            raise InstanceError(
                f"instance {self.question_id!r}: not JSON-serialisable ({err})"
            ) from None

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, where: str = "record") -> EQAInstance:
        """Build an instance from a dict; ``where`` names the record in error messages."""
        if not isinstance(record, Mapping):
            raise InstanceError(f"{where}: expected a JSON object, got {type(record).__name__}")
        missing = [name for name in REQUIRED_FIELDS if record.get(name) is None]
        if missing:
            raise InstanceError(f"{where}: missing required field(s) {', '.join(missing)}")
        unknown = sorted(set(record) - set(FIELD_NAMES))
        if unknown:
            raise InstanceError(f"{where}: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**record)
        except InstanceError as err:
            raise InstanceError(f"{where}: {err}") from None


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(EQAInstance))

#: Separates an OpenEQA question id from a response number: ``<question id>#<n>``.
RESPONSE_SEPARATOR = "#"


def split_reasoning(text: str) -> list[str]:
    """An agent's reasoning text to :attr:`EQAInstance.reasoning_steps`: one per non-empty line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def base_question_id(question_id: str) -> str:
    """The OpenEQA question an instance answers: ``question_id`` up to the first ``#``.

    ``question_id`` identifies an instance; several responses to one OpenEQA question are
    ``<question id>#0``, ``<question id>#1``, ... (pairwise preference groups them this way).
    """
    return question_id.split(RESPONSE_SEPARATOR, 1)[0]


def response_id(question_id: str, n: int) -> str:
    """The stable id of response ``n`` to a question: ``<question id>#<n>``."""
    return f"{question_id}{RESPONSE_SEPARATOR}{n}"


def _check_type(inst: EQAInstance, name: str, types: tuple[type, ...], optional: bool) -> None:
    value = getattr(inst, name)
    if value is None and optional:
        return
    if not isinstance(value, types) or isinstance(value, bool):
        expected = " or ".join(t.__name__ for t in types) + (" or null" if optional else "")
        raise InstanceError(f"field {name!r} must be {expected}, got {value!r:.80}")


def _check_list(inst: EQAInstance, name: str, item_type: type) -> None:
    value = getattr(inst, name)
    if not isinstance(value, list) or any(
        not isinstance(v, item_type) or isinstance(v, bool) for v in value
    ):
        raise InstanceError(f"field {name!r} must be a list of {item_type.__name__}")


def check_instance(inst: EQAInstance) -> None:
    """Raise :class:`InstanceError` if a field has the wrong type or range."""
    for name in ("question_id", "question", "category", "source", "episode_id"):
        _check_type(inst, name, (str,), optional=False)
    for name in ("gt_answer", "predicted_answer", "episode_path", "gt_critique"):
        _check_type(inst, name, (str,), optional=True)
    _check_list(inst, "reasoning_steps", str)
    _check_list(inst, "keyframe_indices", int)
    if any(i < 0 for i in inst.keyframe_indices):
        raise InstanceError("field 'keyframe_indices' must hold non-negative frame indices")
    if inst.gt_score is not None:
        _check_gt_score(inst)
    if not isinstance(inst.meta, dict):
        raise InstanceError("field 'meta' must be a JSON object")


def _check_gt_score(inst: EQAInstance) -> None:
    score = inst.gt_score
    if isinstance(score, float) and math.isfinite(score) and score.is_integer():
        inst.gt_score = score = int(score)  # JSON writers may emit 7.0
    _check_type(inst, "gt_score", (int,), optional=True)
    lo, hi = SCORE_RANGE
    if not lo <= score <= hi:
        raise InstanceError(f"field 'gt_score' must be an integer {lo}..{hi}, got {score}")


def check_unique_ids(sources: Iterable[tuple[str, Iterable[EQAInstance]]]) -> None:
    """Raise :class:`InstanceError` for a ``question_id`` given twice, in one source or two.

    ``sources``: ``(name, instances)`` pairs, the name saying where they came from (a file);
    the error names the id and the source(s) it is in.
    """
    first: dict[str, tuple[int, str]] = {}
    for index, (name, instances) in enumerate(sources):
        for inst in instances:
            qid = inst.question_id
            if qid in first:
                seen_in, seen_name = first[qid]
                where = "given twice" if seen_in == index else f"it is also in {seen_name}"
                raise InstanceError(f"{name}: duplicate question_id {qid!r} ({where})")
            first[qid] = (index, name)


# ---------------------------------------------------------------------------------------------
# JSONL


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[EQAInstance]:
    """Yield instances from a JSONL file; a bad line raises naming ``file:line``."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InstanceError(f"{where}: not valid JSON ({err.msg})") from None
            yield EQAInstance.from_dict(record, where=where)


def read_jsonl(path: str | os.PathLike[str]) -> list[EQAInstance]:
    """Read every instance of a JSONL file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path))


def write_jsonl(path: str | os.PathLike[str], instances: Iterable[EQAInstance]) -> Path:
    """Write instances as JSONL atomically (temporary file, then rename); returns the path."""
    lines = [json.dumps(inst.to_dict(), ensure_ascii=False) + "\n" for inst in instances]
    return atomic_write_text(path, "".join(lines))


# ---------------------------------------------------------------------------------------------
# datasets


def dataset_features() -> datasets.Features:
    """The Arrow schema of an instance dataset (``meta`` is a JSON string)."""
    from datasets import Features, List, Value

    string = Value("string")
    return Features(
        {
            "question_id": string,
            "question": string,
            "category": string,
            "source": string,
            "episode_id": string,
            "gt_answer": string,
            "predicted_answer": string,
            "reasoning_steps": List(string),
            "episode_path": string,
            "keyframe_indices": List(Value("int64")),
            "gt_score": Value("int64"),
            "gt_critique": string,
            "meta": string,
        }
    )


def to_dataset(instances: Iterable[EQAInstance]) -> datasets.Dataset:
    """Convert instances to a ``datasets.Dataset`` with :func:`dataset_features`."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = {name: [] for name in FIELD_NAMES}
    for inst in instances:
        row = inst.to_dict()
        row["meta"] = json.dumps(row["meta"], ensure_ascii=False, sort_keys=True)
        for name in FIELD_NAMES:
            columns[name].append(row[name])
    return Dataset.from_dict(columns, features=dataset_features())


def from_dataset(dataset: datasets.Dataset) -> list[EQAInstance]:
    """Convert a dataset written by :func:`to_dataset` (or with the same columns) back."""
    missing = [name for name in REQUIRED_FIELDS if name not in dataset.column_names]
    if missing:
        raise InstanceError(f"dataset lacks column(s) {', '.join(missing)}")
    out = []
    for i, row in enumerate(dataset):
        row = {k: v for k, v in row.items() if k in FIELD_NAMES}
        meta = row.get("meta")
        if isinstance(meta, str):
            try:
                row["meta"] = json.loads(meta) if meta else {}
            except json.JSONDecodeError as err:
                raise InstanceError(f"dataset row {i}: 'meta' is not JSON ({err.msg})") from None
        elif meta is None:
            row["meta"] = {}
        for name in ("reasoning_steps", "keyframe_indices"):
            if row.get(name) is None:
                row[name] = []
        out.append(EQAInstance.from_dict(row, where=f"dataset row {i}"))
    return out
