"""Training fixtures: the toy set, and one RFT run that the RFT and C-GRPO tests share.

The RFT run is the expensive part (a tiny random model learns the evaluation format), so it
runs once per session; C-GRPO starts from its model, as the paper's stage 2 starts from RFT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from habitat_eqarm.testing.learning import RFT_STEPS, rft_config, rft_fields
from habitat_eqarm.testing.toy import make_toy_rft_set

#: The shared RFT run (200 steps) is set up inside whichever test first asks for it, so that
#: test's timeout has to cover the run as well: about 2-3 min alone on 2 cores, and up to 3x
#: that on a loaded machine. The suite's default (600 s) is for the test's own work.
RFT_SETUP_TIMEOUT = 1200


def pytest_collection_modifyitems(items):
    """Tests that use ``rft_run`` get the suite timeout plus the RFT run's own budget."""
    for item in items:
        if "rft_run" in getattr(item, "fixturenames", ()):
            marker = item.get_closest_marker("timeout")
            own = marker.args[0] if marker and marker.args else 600
            item.add_marker(pytest.mark.timeout(own + RFT_SETUP_TIMEOUT), append=False)


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

    out = tmp_path_factory.mktemp("rft")
    # seed 0: the seed-0 row of docs/testing.md
    trainer = train_rft(rft_config(out, tiny_model_path, toy_set))
    fields = rft_fields(out, tiny_model_path, toy_set)
    return RFTRun(out, fields, RFT_STEPS, trainer.state.global_step)


@pytest.fixture(scope="session")
def agent_toy(tmp_path_factory, tiny_model_path) -> tuple[Path, Path]:
    """``(questions.jsonl, agent)``: the toy questions and the tiny model taught the answer format
    (about half its answers parse after these steps, so both reward paths are exercised)."""
    from habitat_eqarm.testing.agent_toy import make_toy_questions, teach_agent_format

    questions = make_toy_questions(tmp_path_factory.mktemp("agent-toy"))
    agent = teach_agent_format(tmp_path_factory.mktemp("agent"), tiny_model_path, questions)
    return questions, agent
