"""Episode references: how a string-only payload still reaches an episode's frames.

RL frameworks hand a remote reward model strings (verl's ``solution_str`` / ``extra_info``,
OpenRLHF's ``query``), never images. An :class:`EpisodeRef` names the frames instead:

* ``episode_id`` (+ optional ``keyframe_indices``): an episode of the server's
  :class:`EpisodeStore` (``eqarm serve --episode_store DIR``), its keyframes chosen as usual
  when no indices are given;
* ``frames_hash``: the content hash of keyframes put into the store with
  :meth:`EpisodeStore.put_frames` (for frames that exist only in memory, e.g. a live env).

The reference also carries the question (and its id), so one string is enough to judge an
answer. Inside a string it is one tag, ``<eqarm_ref>{JSON}</eqarm_ref>``: put it in the prompt
of a dataset row (:func:`embed_ref`), and any framework that passes the prompt text through
passes the reference too; :func:`find_ref` reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from habitat_eqarm.data.episode import EpisodeMemory, EpisodeMemoryError
from habitat_eqarm.data.io import atomic_path

REF_OPEN, REF_CLOSE = "<eqarm_ref>", "</eqarm_ref>"
_REF_RE = re.compile(re.escape(REF_OPEN) + r"(.*?)" + re.escape(REF_CLOSE), re.DOTALL)
_HASH_RE = re.compile(r"\A[0-9a-f]{64}\Z")
_SEGMENT_RE = re.compile(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]*\Z")  # no '..': ids stay in the store
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class EpisodeRefError(ValueError):
    """A malformed reference, or one the store cannot resolve; the message says which."""


@dataclass(frozen=True)
class EpisodeRef:
    """Which frames an answer is about, and the question it answers (see module doc)."""

    question: str
    question_id: str = ""
    episode_id: str | None = None
    keyframe_indices: list[int] = field(default_factory=list)
    frames_hash: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise EpisodeRefError("an episode reference needs a non-empty 'question'")
        if (self.episode_id is None) == (self.frames_hash is None):
            raise EpisodeRefError("a reference needs exactly one of episode_id, frames_hash")
        if self.episode_id is not None and not _is_episode_id(self.episode_id):
            raise EpisodeRefError(
                f"episode_id {self.episode_id!r}: '/'-separated names of letters, digits, . _ -"
            )
        if self.frames_hash is not None and not _HASH_RE.match(self.frames_hash):
            raise EpisodeRefError(f"frames_hash {self.frames_hash!r}: not a sha256 hex digest")
        if not all(isinstance(i, int) and i >= 0 for i in self.keyframe_indices):
            raise EpisodeRefError(f"keyframe_indices {self.keyframe_indices!r}: not indices")

    @property
    def frames_key(self) -> str:
        """What identifies the frames this reference names (for memoizing scores)."""
        return f"hash:{self.frames_hash}" if self.frames_hash else f"episode:{self.episode_id}"

    def to_json(self) -> str:
        """The reference as compact JSON (empty fields left out)."""
        data = {k: v for k, v in asdict(self).items() if v not in (None, "", [])}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "reference") -> EpisodeRef:
        """Build one from a dict; ``where`` names it in errors."""
        if not isinstance(data, Mapping):
            raise EpisodeRefError(f"{where}: a reference must be a JSON object")
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise EpisodeRefError(f"{where}: unknown fields {sorted(unknown)}")
        try:
            fields = {**data, "keyframe_indices": list(data.get("keyframe_indices", []))}
            return cls(**{"question": "", **fields})
        except (TypeError, EpisodeRefError) as err:
            raise EpisodeRefError(f"{where}: {err}") from None

    @classmethod
    def parse(cls, value: str | Mapping[str, Any], where: str = "reference") -> EpisodeRef:
        """From a dict, a JSON object string, or a string with an embedded tag."""
        if isinstance(value, Mapping):
            return cls.from_dict(value, where)
        found = find_ref(value, where)
        if found is not None:
            return found
        try:
            return cls.from_dict(json.loads(value), where)
        except json.JSONDecodeError:
            raise EpisodeRefError(f"{where}: no {REF_OPEN} tag and not a JSON object") from None


def _is_episode_id(value: object) -> bool:
    """OpenEQA's ids look like ``hm3d-v0/000-hm3d-BFRyYbPCCPE``: relative, no dot segments."""
    return isinstance(value, str) and all(_SEGMENT_RE.match(p) for p in value.split("/"))


def embed_ref(text: str, ref: EpisodeRef) -> str:
    """``text`` with ``ref`` appended as an ``<eqarm_ref>`` tag (on its own line)."""
    return f"{text}\n{REF_OPEN}{ref.to_json()}{REF_CLOSE}"


def find_ref(text: str, where: str = "text") -> EpisodeRef | None:
    """The reference embedded in ``text`` (None if there is none; an error if there are two)."""
    found = _REF_RE.findall(text)
    if not found:
        return None
    if len(set(found)) > 1:
        raise EpisodeRefError(f"{where}: {len(found)} different {REF_OPEN} tags")
    try:
        data = json.loads(found[0])
    except json.JSONDecodeError as err:
        raise EpisodeRefError(f"{where}: the {REF_OPEN} tag is not JSON ({err})") from None
    return EpisodeRef.from_dict(data, where)


def strip_ref(text: str) -> str:
    """``text`` without its reference tags (what the reward model should read)."""
    return _REF_RE.sub("", text).strip()


def frames_hash(frames: np.ndarray) -> str:
    """The sha256 of ``(N, H, W, 3)`` uint8 frames: their shape, then their bytes."""
    array = np.ascontiguousarray(frames, dtype=np.uint8)
    digest = hashlib.sha256(repr(array.shape).encode("ascii"))
    digest.update(array.tobytes())
    return digest.hexdigest()


class EpisodeStore:
    """A folder of episodes a server resolves references against.

    ``DIR/<episode_id>`` is an episode folder in OpenEQA's layout or ``DIR/<episode_id>.mp4``
    (any of :data:`VIDEO_SUFFIXES`) a video; ``DIR/by_hash/<sha256>.npy`` holds keyframes
    put by content.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise EpisodeRefError(f"episode store {self.root}: not a folder")

    def put_frames(self, frames: np.ndarray | Sequence[np.ndarray]) -> str:
        """Store keyframes by content (atomically; idempotent); their :func:`frames_hash`."""
        array = EpisodeMemory.from_frames(frames).frames()
        digest = frames_hash(array)
        target = self.root / "by_hash" / f"{digest}.npy"
        if not target.is_file():
            with atomic_path(target) as tmp:
                np.save(tmp, array, allow_pickle=False)
        return digest

    def memory(self, ref: EpisodeRef) -> EpisodeMemory:
        """The episode memory ``ref`` names (an :class:`EpisodeRefError` when absent)."""
        if ref.frames_hash is not None:
            path = self.root / "by_hash" / f"{ref.frames_hash}.npy"
            if not path.is_file():
                raise EpisodeRefError(f"frames_hash {ref.frames_hash[:12]}...: not in the store")
            return EpisodeMemory.from_frames(np.load(path, allow_pickle=False))
        for candidate in self._candidates(str(ref.episode_id)):
            if candidate.exists():
                try:
                    return EpisodeMemory.from_path(candidate)
                except EpisodeMemoryError as err:
                    raise EpisodeRefError(f"episode {ref.episode_id!r}: {err}") from None
        raise EpisodeRefError(f"episode {ref.episode_id!r}: not in the episode store")

    def _candidates(self, episode_id: str) -> list[Path]:
        return [self.root / episode_id] + [
            self.root / f"{episode_id}{suffix}" for suffix in VIDEO_SUFFIXES
        ]
