"""Checkpoints that a crash mid-save can never make us resume from.

HF's Trainer writes ``checkpoint-N`` in place. :class:`CompleteCheckpointMarker` writes a
``COMPLETE`` marker into each checkpoint once it is fully saved (write to a temporary name,
then rename), and :func:`last_complete_checkpoint` resumes only from a marked one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from transformers import TrainerCallback

from habitat_eqarm.data.io import atomic_write_text

MARKER = "COMPLETE"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CompleteCheckpointMarker(TrainerCallback):
    """Mark a checkpoint complete after the Trainer has finished writing it."""

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            atomic_write_text(folder / MARKER, f"{state.global_step}\n")
        return control


def last_complete_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that carries the marker, or None."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = []
    for entry in root.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if match and (entry / MARKER).is_file():
            found.append((int(match.group(1)), entry))
    return str(max(found)[1]) if found else None
