"""Habitat tests run in ``.venv-habitat`` (habitat-lab pins numpy 1.26.4; `make test` does it).

habitat-sim cannot be installed here, so unless a real one is importable, the test stand-ins
of ``standins.py`` answer imports of ``magnum``, ``corrade`` and ``habitat_sim`` before habitat
is imported. Everything else is real: habitat-lab's registry, Hydra configs, ``habitat.Env``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import standins

REAL_HABITAT_SIM = standins.real_habitat_sim_installed()
if not REAL_HABITAT_SIM:
    standins.install()

needs_real_habitat_sim = pytest.mark.skipif(
    not REAL_HABITAT_SIM,
    reason="renders scenes with habitat-sim, which has no wheel here (install it with conda)",
)


@pytest.fixture(scope="session")
def plugin():
    """The registered plugin module."""
    import habitat_eqarm.envs.habitat_plugin as plugin

    return plugin


@pytest.fixture(scope="session")
def demo_overrides(openeqa_dir: Path, tiny_model_path: Path) -> list[str]:
    """Config overrides: OpenEQA's demo questions and video, the tiny reward model."""
    measure = "habitat.task.measurements.eqarm_reward"
    return [
        f"habitat.dataset.data_path={openeqa_dir / 'open-eqa-demo-data.json'}",
        f"habitat.dataset.episodes_root={openeqa_dir}",
        f"{measure}.reward_model={tiny_model_path}",
        f"{measure}.k=2",
        f"{measure}.seed=0",
        f"{measure}.max_new_tokens=24",
    ]


@pytest.fixture(scope="session")
def depth_questions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic HM3D-style episode folder with depth and poses, and a questions JSON."""
    from habitat_eqarm.data.synthetic import make_synthetic_episode

    root = tmp_path_factory.mktemp("depth-data")
    _, instances = make_synthetic_episode(root / "hm3d-v0" / "000-hm3d-synthetic", seed=0)
    records = [
        {
            "question": inst.question,
            "answer": inst.gt_answer,
            "category": inst.category or "object recognition",
            "question_id": inst.question_id,
            "episode_history": "hm3d-v0/000-hm3d-synthetic",
        }
        for inst in instances
    ]
    questions = root / "questions.json"
    questions.write_text(json.dumps(records))
    return questions, root
