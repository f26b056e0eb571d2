"""Append-only JSONL files that survive ``kill -9``: the storage of every builder stage.

A stage appends one finished record per line with a single ``write`` of the whole line, then
``flush`` and ``fsync``, so a record is either on disk or not. A run killed mid-write can
leave at most one torn last line; opening the file again cuts that torn tail off before
anything is appended, so no partial line survives. Records carry a stable id, and a stage
skips ids already in its journal: a re-run does only the missing work and never writes an
id twice. One writer at a time: a second run on the same file fails at once (``flock``; the
lock dies with its process, so a killed run never leaves a stale lock).

A sidecar ``<file>.settings.json`` records the settings that produced the records (model,
prompt id, sampling); resuming with different settings is refused instead of mixing outputs.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from habitat_eqarm.data.io import atomic_write_text


class JournalError(ValueError):
    """A journal cannot be used: locked by another run, corrupt, or made with other settings."""


def repair_torn_tail(path: Path) -> int:
    """Cut a last line that lacks its newline (a write cut by a kill); returns bytes removed."""
    if not path.is_file():
        return 0
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        block, keep = 1 << 16, 0
        pos = size
        while pos > 0:  # scan back to the last newline
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        return size - keep


class AppendLog:
    """A JSONL file opened for appending whole records, locked against a second writer."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.torn_bytes = 0
        self._fd: int | None = None
        self._lock_fd: int | None = None

    def open(self) -> AppendLog:
        """Lock the file, cut a torn tail, open for appending (creating folders as needed)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise JournalError(f"{self.path}: another run is writing this file") from None
        self.torn_bytes = repair_torn_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(line number, record)`` for every line; a line that is not a JSON object raises."""
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise JournalError(
                        f"{self.path}:{lineno}: not valid JSON ({err.msg})"
                    ) from None
                if not isinstance(record, dict):
                    raise JournalError(f"{self.path}:{lineno}: expected a JSON object")
                yield lineno, record

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line in a single write, then flush it to disk."""
        if self._fd is None:
            raise JournalError(f"{self.path}: not open")
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # a short write: finish the same line
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file and release the lock; idempotent."""
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> AppendLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Journal(AppendLog):
    """An :class:`AppendLog` of records keyed by a stable id, with the settings that made them.

    ``settings`` must match those recorded beside an existing file (keys in ``settings`` only;
    new keys are added). ``entries`` maps each id to its record, in file order.
    """

    def __init__(
        self, path: str | os.PathLike[str], settings: dict[str, Any], key: str = "question_id"
    ) -> None:
        super().__init__(path)
        self.settings = settings
        self.key = key
        self.entries: dict[str, dict[str, Any]] = {}

    @property
    def settings_path(self) -> Path:
        """The sidecar file holding the settings."""
        return self.path.with_name(self.path.name + ".settings.json")

    def open(self) -> Journal:
        """Lock, repair, check the settings and load every finished record."""
        super().open()
        try:
            self._check_settings()
            for lineno, record in self.records():
                ident = record.get(self.key)
                if not isinstance(ident, str):
                    raise JournalError(f"{self.path}:{lineno}: record lacks its id {self.key!r}")
                if ident in self.entries:
                    raise JournalError(f"{self.path}:{lineno}: id {ident!r} appears twice")
                self.entries[ident] = record
        except BaseException:
            self.close()
            raise
        return self

    def _check_settings(self) -> None:
        old: dict[str, Any] = {}
        if self.settings_path.is_file():
            old = json.loads(self.settings_path.read_text(encoding="utf-8"))
        if self.path.is_file() and self.path.stat().st_size:
            changed = [k for k in self.settings if k in old and old[k] != self.settings[k]]
            if changed:
                diffs = "; ".join(f"{k}: {old[k]!r} -> {self.settings[k]!r}" for k in changed)
                raise JournalError(
                    f"{self.path} was written with other settings ({diffs}); resume with the "
                    "same settings, or write to another file"
                )
        if {**old, **self.settings} != old:
            atomic_write_text(self.settings_path, json.dumps({**old, **self.settings}, indent=2))

    def __contains__(self, ident: object) -> bool:
        return ident in self.entries

    def add(self, record: dict[str, Any]) -> None:
        """Append a finished record; an id already present is an error (never duplicated)."""
        ident = record[self.key]
        if ident in self.entries:
            raise JournalError(f"{self.path}: id {ident!r} is already finished")
        self.append(record)
        self.entries[ident] = record
