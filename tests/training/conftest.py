"""Training fixtures: the toy set, and one RFT run that the RFT and C-GRPO tests share.

The RFT run is the expensive part (a tiny random model learns the evaluation format), so it
runs once per session; C-GRPO starts from its model, as the paper's stage 2 starts from RFT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from habitat_eqarm.testing.toy import make_toy_rft_set

CPU = dict(bf16=False, use_cpu=True, activation_checkpointing=False, report_to="none")
# small inputs keep CPU steps short: 3 keyframes of about 160x120 pixels
SMALL = dict(num_keyframes=3, max_pixels=20_000)
# the paper's lr of 1e-6 is for a pretrained 2B model; a random tiny one needs far more
RFT_TRAIN = dict(learning_rate=1e-2, per_device_train_batch_size=4, save_steps=50, seed=0)
RFT_STEPS = 200


@pytest.fixture(scope="session")
def toy_set(tmp_path_factory) -> tuple[Path, Path]:
    """``(instances.jsonl, candidates.jsonl)`` of the toy RFT set."""
    return make_toy_rft_set(tmp_path_factory.mktemp("toy"))


@dataclass
class RFTRun:
    output_dir: Path
    fields: dict  # the RFTConfig fields it ran with (to resume it elsewhere)
    max_steps: int
    global_step: int


@pytest.fixture(scope="session")
def rft_run(tmp_path_factory, tiny_model_path, toy_set) -> RFTRun:
    """The tiny model after RFT on the toy set (saved model + complete checkpoints)."""
    from habitat_eqarm.training.rft import train_rft
    from habitat_eqarm.training.rft_config import RFTConfig

    out = tmp_path_factory.mktemp("rft")
    instances, candidates = toy_set
    fields = dict(
        output_dir=str(out),
        model_name_or_path=str(tiny_model_path),
        data=str(instances),
        candidates=str(candidates),
        logging_steps=50,
        **CPU,
        **SMALL,
        **RFT_TRAIN,
    )
    trainer = train_rft(RFTConfig(**fields, max_steps=RFT_STEPS))
    return RFTRun(out, fields, RFT_STEPS, trainer.state.global_step)
