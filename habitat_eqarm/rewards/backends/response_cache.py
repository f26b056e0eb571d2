"""A persistent on-disk cache of sampled texts, one small JSON file per sample.

The key is a dict of everything that determines a sample (model, prompt id, a hash of the
inputs, the sampling parameters, the sample's index); its SHA-256 names the file. Files are
written atomically, so a killed run leaves whole entries or none, and an entry that cannot be
read back (torn by a full disk, edited by hand, from another version) counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from habitat_eqarm.data.io import atomic_write_text

logger = logging.getLogger(__name__)


def key_digest(key: dict[str, Any]) -> str:
    """The SHA-256 hex digest of a JSON-serialisable key (order of dict keys irrelevant)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()


def inputs_digest(messages: list[dict[str, Any]], frames: np.ndarray, **extra: Any) -> str:
    """SHA-256 of a request's messages, its frames' exact pixels and ``extra`` settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"messages": messages, **extra}, sort_keys=True).encode("utf-8"))
    array = np.ascontiguousarray(frames)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    if array.size:  # text-only requests have no frames (and memoryview refuses empty casts)
        h.update(memoryview(array).cast("B"))
    return h.hexdigest()


class ResponseCache:
    """Texts stored under ``root/<2 hex>/<sha256>.json``; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.root)!r})"

    def path(self, key: dict[str, Any]) -> Path:
        """The file that holds (or would hold) ``key``'s entry."""
        digest = key_digest(key)
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, key: dict[str, Any]) -> str | None:
        """The cached text for ``key``, or None if absent or unreadable."""
        path = self.path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            logger.warning("ignoring unreadable cache entry %s (%s)", path, type(err).__name__)
            return None
        if not (isinstance(entry, dict) and entry.get("key") == key and "text" in entry):
            logger.warning("ignoring cache entry %s: not an entry for this key", path)
            return None
        text = entry["text"]
        return text if isinstance(text, str) else None

    def put(self, key: dict[str, Any], text: str) -> None:
        """Store ``text`` under ``key`` (atomically)."""
        entry = json.dumps({"key": key, "text": text}, ensure_ascii=False, sort_keys=True)
        atomic_write_text(self.path(key), entry)
