"""What the builder stages share: backends from config, run reports, the resumable run loop
(in this process, or its chunks in Ray actors with ``--engine ray``)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import zlib
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from habitat_eqarm.bench.builder.journal import Journal
from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.schema import EQAInstance, InstanceError, read_jsonl
from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
    load_backend,
)
from habitat_eqarm.rewards.ray_engine import map_shards


def backend_kwargs(value: str | dict[str, Any] | None, option: str = "backend_kwargs") -> dict:
    """Keyword arguments for a backend: a dict (from YAML) or a JSON object string (flag)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"--{option} must be a JSON object, got {value!r} ({err.msg})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"--{option} must be a JSON object, got {value!r}")
    return parsed


def open_backend(name: str, model: str, kwargs: str | dict | None) -> RewardBackend:
    """Any registered backend by name (``hf``, ``openai``, ...), configured only by options."""
    if not model:
        raise ValueError("--model is required: the generator's or judge's path, hub id or name")
    options = backend_kwargs(kwargs)
    try:
        return load_backend(name, model, **options)
    except TypeError as err:  # an option the backend does not take: name it, not a traceback
        if "keyword argument" not in str(err):
            raise
        raise ValueError(
            f"--backend_kwargs {sorted(options)} do not fit the {name!r} backend ({err})"
        ) from None


def public_kwargs(kwargs: str | dict | None) -> dict[str, Any]:
    """Backend kwargs fit to record in outputs: anything that looks like a secret is dropped."""
    secret = ("key", "token", "secret", "password", "auth")
    return {
        k: v for k, v in backend_kwargs(kwargs).items() if not any(s in k.lower() for s in secret)
    }


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """A comma-separated option (or a YAML list) as a list of stripped, non-empty items."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item and item.strip()]


def read_instances(path: str | os.PathLike[str]) -> list[EQAInstance]:
    """Instances of a stage's JSONL output, with a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise InstanceError(f"{path}: no such file (run the previous stage first?)")
    return read_jsonl(path)


@dataclass
class StageReport:
    """What one run of a stage did: counts, and every item skipped with its reason."""

    stage: str
    total: int = 0
    already_done: int = 0
    done_now: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    tables: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def skip(self, item_id: str, reason: str) -> None:
        """Record an item left out of this run and why."""
        self.skipped.append({"id": item_id, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict, with skip reasons tallied."""
        reasons = Counter(s["reason"].split(":", 1)[0] for s in self.skipped)
        return {
            "stage": self.stage,
            "total": self.total,
            "already_done": self.already_done,
            "done_now": self.done_now,
            "skipped": len(self.skipped),
            "skipped_by_reason": dict(reasons),
            "counts": dict(self.counts),
            **self.summary,
            "skipped_items": self.skipped,
        }

    def markdown(self) -> str:
        """A two-column Markdown table of the counts."""
        data = self.to_dict()
        rows = [("items in scope", self.total), ("already done", self.already_done)]
        rows += [("done in this run", self.done_now), ("skipped", data["skipped"])]
        rows += [(f"skipped: {r}", n) for r, n in sorted(data["skipped_by_reason"].items())]
        rows += list(self.counts.items())
        body = "\n".join(f"| {name} | {value} |" for name, value in rows)
        tables = "".join(f"\n{title}\n\n{table}" for title, table in self.tables.items())
        return f"| {self.stage} | count |\n|---|---:|\n{body}\n{tables}"

    def write(self, out: Path) -> Path:
        """``<out>.report.json`` and ``<out>.report.md`` beside the stage's output."""
        atomic_write_text(out.with_name(out.name + ".report.md"), self.markdown())
        path = out.with_name(out.name + ".report.json")
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def generate_each(
    backend: RewardBackend, requests: Sequence[GenerationRequest], params: SamplingParams
) -> list[GenerationResult | Exception]:
    """``backend.generate`` over a batch; if the batch fails, each request alone.

    One bad request (an unreadable frame, a rejected prompt) then costs only itself: its slot
    holds the exception, to be reported and skipped by the caller.
    """
    try:
        return list(backend.generate(list(requests), params))
    except Exception as err:
        if len(requests) == 1:
            return [err]
        return [generate_each(backend, [req], params)[0] for req in requests]


def call_seed(seed: int, item_id: str, attempt: int) -> int:
    """A sampling seed fixed by the run's seed, the first item of a call and the attempt."""
    return (seed * 1_000_003 + zlib.crc32(f"{item_id}/{attempt}".encode())) % (2**31)


class MemoryCache:
    """Open episode memories, the few most recently used kept (readers hold file handles)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._open: OrderedDict[str, EpisodeMemory] = OrderedDict()

    def get(self, path: str) -> EpisodeMemory:
        """The memory at ``path``, opened once while it stays among the recent ones."""
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        memory = EpisodeMemory.from_path(path)
        self._open[path] = memory
        while len(self._open) > self.size:
            self._open.popitem(last=False)
        return memory


def error_text(err: BaseException) -> str:
    """``Type: message`` on one line, for reports."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}"[:300]


class _NoBar:
    def update(self, n: int = 1) -> None:
        """Nothing to show."""


ProgressFactory = Callable[[int, str], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def no_progress(total: int, desc: str) -> Iterator[_NoBar]:
    """A progress-bar factory that shows nothing (library use; the CLI passes tqdm's)."""
    yield _NoBar()


T = TypeVar("T")


def run_stage(
    cfg: Any,
    report: StageReport,
    items: Sequence[T],
    outputs: Callable[[T], list[str]],
    run_class: type[StageRun],
    settings: dict[str, Any],
    progress: ProgressFactory,
) -> list[dict[str, Any]]:
    """Run a stage over ``items`` into its journal ``cfg.out``; the finished records in scope.

    ``outputs(item)``: the ids of the records an item yields (generate: N responses; judge:
    one). Items with a record missing go to ``run_class(...).chunk`` ``cfg.batch_size`` at a
    time; the backend is opened only if there is work. ``report`` gets the totals.
    """
    ids = [i for item in items for i in outputs(item)]
    with Journal(Path(cfg.out), settings) as journal, progress(len(ids), report.stage) as bar:
        report.total = len(ids)
        report.already_done = sum(i in journal for i in ids)
        bar.update(report.already_done)
        todo = [item for item in items if any(i not in journal for i in outputs(item))]
        chunks = [list(todo[s : s + cfg.batch_size]) for s in range(0, len(todo), cfg.batch_size)]
        if chunks and getattr(cfg, "engine", "local") == "ray":
            _run_on_ray(cfg, journal, report, chunks, outputs, run_class, bar.update)
        elif chunks:
            backend = open_backend(cfg.backend, cfg.model, cfg.backend_kwargs)
            try:
                run = run_class(cfg, journal, report, backend, bar.update)
                for chunk in chunks:
                    run.chunk(chunk)
            finally:
                backend.close()
        return [journal.entries[i] for i in ids if i in journal]


def _run_on_ray(cfg, journal, report, chunks, outputs, run_class, advance) -> None:
    """The chunks in Ray actors (:mod:`~habitat_eqarm.rewards.ray_engine`), each with the
    records of its items already finished; their new records are journalled here, once."""

    def done_of(chunk: list) -> dict[str, dict[str, Any]]:
        ids = [i for item in chunk for i in outputs(item)]
        return {i: journal.entries[i] for i in ids if i in journal}

    def on_result(_, result: tuple[list[dict[str, Any]], list[dict[str, str]]]) -> None:
        records, skipped = result
        for record in records:
            if record[journal.key] not in journal:
                journal.add(record)
                report.done_now += 1
                advance(1)
        report.skipped.extend(skipped)

    shards = [(chunk, done_of(chunk)) for chunk in chunks]
    map_shards(shards, functools.partial(_ChunkWorker, cfg, run_class), on_result, cfg)


class _ShardJournal:
    """What a chunk sees of the journal in a Ray actor: its items' finished records, and the
    records it adds (sent back to the driver, which writes them)."""

    key = "question_id"

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self.entries = dict(entries)
        self.added: list[dict[str, Any]] = []

    def __contains__(self, ident: object) -> bool:
        return ident in self.entries

    def add(self, record: dict[str, Any]) -> None:
        """Keep a finished record for the driver."""
        self.entries[record[self.key]] = record
        self.added.append(record)


class _ChunkWorker:
    """Runs chunks of a stage with a backend it opens once (one per Ray actor)."""

    def __init__(self, cfg: Any, run_class: type[StageRun]) -> None:
        self.cfg, self.run_class = cfg, run_class
        self.backend = open_backend(cfg.backend, cfg.model, cfg.backend_kwargs)
        self.memories = MemoryCache()

    def __call__(self, shard: tuple[list, dict[str, dict[str, Any]]]):
        chunk, done = shard
        journal, report = _ShardJournal(done), StageReport("chunk")
        run = self.run_class(self.cfg, journal, report, self.backend, lambda _: None, self.memories)
        run.chunk(chunk)
        return journal.added, report.skipped


@dataclass
class StageRun(ABC):
    """One run of a stage: its journal, report and backend; subclasses say what a chunk is."""

    cfg: Any
    journal: Journal
    report: StageReport
    backend: RewardBackend
    advance: Callable[[int], Any]
    memories: MemoryCache = field(default_factory=MemoryCache)

    @abstractmethod
    def chunk(self, items: list[Any]) -> None:
        """Do a few items' missing work, adding each finished record (:meth:`add`)."""

    def add(self, record: dict[str, Any]) -> None:
        """Append a finished record to the journal and count it."""
        self.journal.add(record)
        self.report.done_now += 1
        self.advance(1)

    def params(self, first_id: str, attempt: int, k: int = 1) -> SamplingParams:
        """Sampling settings of one backend call, seeded by its first item and the attempt."""
        cfg = self.cfg
        seed = call_seed(cfg.seed, first_id, attempt)
        return SamplingParams(k, cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed)

    def ask(
        self,
        requests: Mapping[str, GenerationRequest],
        parse: Callable[[str, GenerationResult, int], T],
        retry: Callable[[T], bool],
        what: str,
        k: int = 1,
        max_new_tokens: int | None = None,
    ) -> dict[str, T]:
        """Each request's parsed answer, asked again (``cfg.max_attempts`` in all) while
        ``retry(answer)``.

        ``parse(id, result, attempt)`` reads a result of ``k`` texts (``max_new_tokens``: a
        lower cap than the config's). The requests pending go in one call, one by one if it
        fails (:func:`generate_each`); an item whose call fails is reported as
        ``<what> failed`` and left out, so a re-run asks for it again.
        """
        done: dict[str, T] = {}
        pending = list(requests)
        for attempt in range(1, self.cfg.max_attempts + 1):
            if not pending:
                break
            params = self.params(pending[0], attempt, k)
            if max_new_tokens is not None:
                params.max_new_tokens = min(params.max_new_tokens, max_new_tokens)
            results = generate_each(self.backend, [requests[i] for i in pending], params)
            for item, result in zip(pending, results, strict=True):
                if isinstance(result, Exception):
                    done.pop(item, None)
                    self.report.skip(item, f"{what} failed: {error_text(result)}")
                else:
                    done[item] = parse(item, result, attempt)
            pending = [i for i in pending if i in done and retry(done[i])]
        return done
