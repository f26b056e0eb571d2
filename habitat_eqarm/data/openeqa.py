"""OpenEQA questions as :class:`EQAInstance` records, with their episode memory resolved.

OpenEQA v0 records have ``question``, ``answer``, ``category``, ``question_id`` and
``episode_history`` (e.g. ``hm3d-v0/000-hm3d-BFRyYbPCCPE``), sometimes ``extra_answers``
(kept in ``meta``). The A-EQA subset is a JSON list of question ids.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from habitat_eqarm.data.schema import EQAInstance

OPENEQA_FIELDS = ("question", "answer", "category", "question_id", "episode_history")
CATEGORIES = (
    "object recognition",
    "object localization",
    "attribute recognition",
    "spatial understanding",
    "object state recognition",
    "functional reasoning",
    "world knowledge",
)

#: Environment variable naming a folder with OpenEQA's files (used by the CLI and tests).
DATA_ENV = "EQARM_OPENEQA"


class OpenEQAError(ValueError):
    """OpenEQA data is malformed or cannot be found; the message names the file and item."""


def source_of(episode_history: str) -> str:
    """``"hm3d"``, ``"scannet"`` or ``"other"`` from an ``episode_history`` string.

    The first path component decides (``hm3d-v0/...``); failing that, the name (OpenEQA's demo
    episode is ``assets/open-eqa-hm3d-demo``).
    """
    parts = PurePosixPath(episode_history).parts
    for text in (parts[0] if parts else "", episode_history):
        lowered = text.lower()
        for source in ("hm3d", "scannet"):
            if source in lowered:
                return source
    return "other"


_SCANNET_SCAN = re.compile(r"(scene\d{4})_\d{2}$")  # ScanNet: sceneXXXX_YY, YY the rescan
_HM3D_EPISODE = re.compile(r"^\d+-hm3d-(\w+)$")  # OpenEQA: <index>-hm3d-<HM3D scene id>


def room_of(episode_history: str) -> str:
    """The room (scene) an episode history was recorded in, for room-disjoint splits.

    ScanNet scans a room several times (``scene0549_00``, ``scene0549_01``): every rescan is
    ``scannet/scene0549``. HM3D episodes are ``hm3d/<scene id>``. Anything else (OpenEQA's
    demo, synthetic episodes) is its own room: the episode id itself.
    """
    name = PurePosixPath(episode_history).name
    scan = _SCANNET_SCAN.search(name)
    if scan and source_of(episode_history) != "hm3d":
        return f"scannet/{scan.group(1)}"
    hm3d = _HM3D_EPISODE.match(name)
    if hm3d and source_of(episode_history) == "hm3d":
        return f"hm3d/{hm3d.group(1)}"
    return episode_history


def _load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise OpenEQAError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise OpenEQAError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def safe_episode_relpath(episode_history: str, where: str) -> PurePosixPath:
    """Validate that ``episode_history`` is a relative path that stays inside the data root."""
    rel = PurePosixPath(episode_history.replace("\\", "/"))
    if not episode_history or rel.is_absolute() or episode_history.startswith(("/", "\\")):
        raise OpenEQAError(f"{where}: episode_history {episode_history!r} must be a relative path")
    if ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise OpenEQAError(f"{where}: episode_history {episode_history!r} escapes the data root")
    return rel


def episode_candidates(data_root: Path, rel: PurePosixPath) -> list[Path]:
    """Where an episode may live under ``data_root``, in order of preference.

    The folder itself, ``<folder>-0.mp4`` (OpenEQA's rendered videos), ``<folder>.mp4``; then the
    same three for the last path component alone (OpenEQA's demo names ``assets/<name>``).
    """
    out = []
    for base in (data_root / rel, data_root / rel.name):
        for cand in (
            base,
            base.with_name(base.name + "-0.mp4"),
            base.with_name(base.name + ".mp4"),
        ):
            if cand not in out:
                out.append(cand)
    return out


def resolve_episode(data_root: Path, episode_history: str, where: str) -> Path | None:
    """The first existing candidate of :func:`episode_candidates`, or None."""
    rel = safe_episode_relpath(episode_history, where)
    root = data_root.resolve()
    for cand in episode_candidates(data_root, rel):
        if cand.exists():
            if not cand.resolve().is_relative_to(root):  # a symlink pointing outside the root
                raise OpenEQAError(f"{where}: episode {cand} resolves outside the data root {root}")
            return cand
    return None


def _instance(record: Any, where: str) -> EQAInstance:
    if not isinstance(record, dict):
        raise OpenEQAError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in OPENEQA_FIELDS if not isinstance(record.get(k), str) or not record[k]]
    if missing:
        raise OpenEQAError(f"{where}: missing or empty field(s) {', '.join(missing)}")
    episode = record["episode_history"]
    safe_episode_relpath(episode, where)
    meta = {"extra_answers": record["extra_answers"]} if record.get("extra_answers") else {}
    return EQAInstance(
        question_id=record["question_id"],
        question=record["question"],
        category=record["category"],
        source=source_of(episode),
        episode_id=episode,
        gt_answer=record["answer"],
        meta=meta,
    )


def load_openeqa(
    questions_json: str | os.PathLike[str],
    data_root: str | os.PathLike[str] | None = None,
    subset_ids: str | os.PathLike[str] | Iterable[str] | None = None,
    *,
    on_missing: Literal["error", "skip", "keep"] = "error",
) -> list[EQAInstance]:
    """Load OpenEQA questions as instances (file order kept).

    ``subset_ids``: a JSON file with a list of question ids (e.g. the 184 A-EQA ids) or the ids
    themselves; only those questions are returned, and an unknown id is an error.
    ``data_root``: where episode histories live; each instance's ``episode_path`` is set to the
    folder or video found there (:func:`episode_candidates`). An episode not found is an error
    naming the question and the paths tried (``on_missing="error"``), dropped
    (``"skip"``), or left with ``episode_path=None`` (``"keep"``). Without ``data_root`` no
    episode is resolved.
    """
    path = Path(questions_json)
    records = _load_json(path)
    if not isinstance(records, list):
        raise OpenEQAError(f"{path}: expected a JSON list of questions")
    instances = [_instance(rec, f"{path}[{i}]") for i, rec in enumerate(records)]
    if subset_ids is not None:
        instances = _select(instances, subset_ids, path)
    if data_root is not None:
        instances = _attach_episodes(instances, Path(data_root), path, on_missing)
    return instances


def _select(instances: list[EQAInstance], subset_ids: Any, path: Path) -> list[EQAInstance]:
    if isinstance(subset_ids, (str, os.PathLike)):
        id_path = Path(subset_ids)
        ids = _load_json(id_path)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise OpenEQAError(f"{id_path}: expected a JSON list of question ids")
    else:
        ids = list(subset_ids)
    wanted = set(ids)
    known = {inst.question_id for inst in instances}
    unknown = sorted(wanted - known)
    if unknown:
        raise OpenEQAError(f"{path}: {len(unknown)} subset id(s) not found, e.g. {unknown[0]!r}")
    return [inst for inst in instances if inst.question_id in wanted]


def _attach_episodes(
    instances: list[EQAInstance], data_root: Path, path: Path, on_missing: str
) -> list[EQAInstance]:
    if on_missing not in ("error", "skip", "keep"):
        raise ValueError(f"on_missing must be 'error', 'skip' or 'keep', got {on_missing!r}")
    if not data_root.is_dir():
        raise OpenEQAError(f"{data_root}: data root is not a folder")
    found: dict[str, Path | None] = {}
    out = []
    for inst in instances:
        where = f"{path} question {inst.question_id}"
        if inst.episode_id not in found:
            found[inst.episode_id] = resolve_episode(data_root, inst.episode_id, where)
        episode = found[inst.episode_id]
        if episode is None and on_missing == "error":
            tried = ", ".join(
                str(c) for c in episode_candidates(data_root, PurePosixPath(inst.episode_id))
            )
            raise OpenEQAError(f"{where}: episode {inst.episode_id!r} not found (tried {tried})")
        if episode is None and on_missing == "skip":
            continue
        inst.episode_path = None if episode is None else str(episode)
        out.append(inst)
    return out


def default_data_dirs() -> list[Path]:
    """Where the CLI and tests look for OpenEQA: ``$EQARM_OPENEQA``, then ``../shared/openeqa``."""
    dirs = []
    if os.environ.get(DATA_ENV):
        dirs.append(Path(os.environ[DATA_ENV]))
    here = Path.cwd()
    dirs += [
        here / ".." / "shared" / "openeqa",
        Path(__file__).resolve().parents[3] / "shared" / "openeqa",
    ]
    return dirs


def find_openeqa_dir() -> Path | None:
    """The first of :func:`default_data_dirs` that holds ``open-eqa-v0.json``, or None."""
    for folder in default_data_dirs():
        if (folder / "open-eqa-v0.json").is_file():
            return folder.resolve()
    return None
