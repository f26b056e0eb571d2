"""Checkpoints that a crash mid-save can never make us resume from, and that resume whole.

HF's Trainer writes ``checkpoint-N`` in place. :class:`CompleteCheckpointMarker` writes a
``COMPLETE`` marker into each checkpoint once it is fully saved (write to a temporary name,
then rename), and :func:`last_complete_checkpoint` resumes only from a marked one.

:class:`ResumeWeights` fixes a silent loss on resume: for Qwen2-VL, transformers 5 saves
checkpoints under the checkpoint key names (``visual.*``, ``model.layers.*``) but the Trainer
loads them back with a plain, non-strict ``load_state_dict`` against the module's names
(``model.visual.*``, ``model.language_model.*``), so all but ``lm_head`` were skipped and a
resumed run went on from its starting weights. ``from_pretrained`` maps the names; we use it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from transformers import TrainerCallback

from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.rewards.backends.transformers_compat import CheckpointLoadHook

MARKER = "COMPLETE"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CompleteCheckpointMarker(TrainerCallback):
    """Mark a checkpoint complete after the Trainer has finished writing it."""

    def on_save(self, args, state, control, **kwargs):
        from accelerate.utils import wait_for_everyone

        # several processes: each writes its own part (optimizer shards, RNG state) and the
        # main one the trainer state, so the marker waits for all, and one process writes it
        wait_for_everyone()
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save and folder.is_dir():
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


class ResumeWeights(CheckpointLoadHook):
    """Trainer mixin: resuming loads every weight of the checkpoint, key names mapped."""

    def after_checkpoint_load(self, resume_from_checkpoint, model=None):
        """Load the checkpoint again through ``from_pretrained``, which maps the key names."""
        if getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False):
            return  # those load their own sharded checkpoints
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        dtype = next(target.parameters()).dtype
        saved = type(target).from_pretrained(resume_from_checkpoint, dtype=dtype)
        missing, unexpected = target.load_state_dict(saved.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{resume_from_checkpoint}: the checkpoint does not match the model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
