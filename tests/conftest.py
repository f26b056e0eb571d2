"""Shared fixtures: real OpenEQA data by path (skipped with a reason when absent), a tiny model."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from habitat_eqarm.rewards.backends.base import GenerationResult, RewardBackend

REPO = Path(__file__).resolve().parents[1]

# tests/habitat need habitat-lab, which pins numpy 1.26.4: `make test` runs them in .venv-habitat.
collect_ignore = [] if importlib.util.find_spec("habitat") else ["habitat"]


def _openeqa_dir() -> Path | None:
    candidates = [os.environ.get("EQARM_OPENEQA"), REPO.parent / "shared" / "openeqa"]
    for cand in candidates:
        if cand and (Path(cand) / "open-eqa-v0.json").is_file():
            return Path(cand).resolve()
    return None


OPENEQA = _openeqa_dir()
needs_openeqa = pytest.mark.skipif(
    OPENEQA is None, reason="OpenEQA data not found (../shared/openeqa or $EQARM_OPENEQA)"
)


@pytest.fixture(scope="session")
def openeqa_dir() -> Path:
    """The folder with OpenEQA's real files; skips the test when there is none."""
    if OPENEQA is None:
        pytest.skip("OpenEQA data not found (../shared/openeqa or $EQARM_OPENEQA)")
    return OPENEQA


@pytest.fixture(scope="session")
def demo_video(openeqa_dir: Path) -> Path:
    """OpenEQA's real HM3D demo episode video (168 frames, 1280x720)."""
    return openeqa_dir / "open-eqa-hm3d-demo.mp4"


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2-VL checkpoint built locally once per test session."""
    from habitat_eqarm.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-vl"), seed=0)


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory):
    """A synthetic episode written in OpenEQA's folder layout, and its questions."""
    from habitat_eqarm.data.synthetic import make_synthetic_episode

    folder = tmp_path_factory.mktemp("synthetic") / "episode"
    return make_synthetic_episode(folder, seed=0)


@pytest.fixture(scope="session")
def eqarm_server(tiny_model_path, synthetic_folder, tmp_path_factory):
    """A real `eqarm serve` of the tiny model in a subprocess on loopback, shared by the session.

    It needs a bearer token (``eqarm_server.token``), has the fault endpoint on, may read
    episodes under the synthetic episode's folder, resolves episode references against
    ``eqarm_server.episode_store`` (the synthetic episode under its id, keyframes put by
    hash), and logs to ``eqarm_server.log_path``.
    Tests that change its fault plan reset it; tests that count requests use differences.
    """
    import secrets

    from habitat_eqarm.testing.server import start_server

    folder = tmp_path_factory.mktemp("eqarm-serve")
    data_root = synthetic_folder[1][0].episode_path
    args = ["--fault_endpoint", "true", "--max_batch", "8", "--max_wait_ms", "50"]
    args += ["--data_root", str(Path(data_root).parent)]
    store = folder / "episode_store"
    episode = store / synthetic_folder[1][0].episode_id
    episode.parent.mkdir(parents=True)
    episode.symlink_to(Path(data_root), target_is_directory=True)
    args += ["--episode_store", str(store)]
    token = f"sk-test-{secrets.token_hex(16)}"
    server = start_server(tiny_model_path, args, log_path=folder / "server.log", token=token)
    server.episode_store = store
    yield server
    server.stop()


class ScriptedBackend(RewardBackend):
    """Test double for a reward model: sample i of every request is ``<score>i</score>``
    behind a critique (so K samples score 0..K-1); ``calls`` records (requests, k) per call."""

    def __init__(self, model_id: str = "served-name"):
        self.model_id = model_id
        self.calls: list[tuple[int, int]] = []

    def sample(self, requests, params):
        self.calls.append((len(requests), params.k))
        texts = [f"<critique>Seen.</critique><score>{i}</score>" for i in range(params.k)]
        return [GenerationResult(list(texts)) for _ in requests]


@pytest.fixture
def scripted_backend():
    """A factory of :class:`ScriptedBackend` test doubles."""
    return ScriptedBackend


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs, started once for every Ray engine test (a start costs
    seconds); skips when the ``ray`` extra is not installed."""
    ray = pytest.importorskip("ray", reason="the ray extra (pip install .[ray]) is not installed")
    pytest.importorskip("ray.data", reason="Ray Data (ray[data]) is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


class AnswerValueJudge:
    """Test double of a capable reward model (the tiny random one writes noise): every response
    in a prompt is scored by the number its answer ends with (``"value 7"`` -> 7), as a
    pointwise evaluation or, for a multi-response prompt, one block per listed response.
    ``prompts`` records each prompt's text; each request takes 1 s of ``generate_s``.
    """

    name = "answer-value-judge"

    def __init__(self, model="answer-value-judge", **_):
        import re

        self.model_id = model
        self.prompts = []
        self._values = re.compile(r"Predicted answer: value (\d+)")

    def reply(self, text):
        values = self._values.findall(text)
        if "[Response 1]" not in text:
            return f"<critique>Seen.</critique><score>{values[0]}</score>"
        return "".join(
            f'<evaluation response="{i}"><critique>Seen.</critique><score>{v}</score></evaluation>'
            for i, v in enumerate(values, 1)
        )

    def sample(self, requests, params):
        from habitat_eqarm.rewards.backends.base import GenerationResult

        out = []
        for req in requests:
            text = req.messages[-1]["content"][-1]["text"]
            self.prompts.append(text)
            out.append(GenerationResult([self.reply(text)] * params.k, {"generate_s": 1.0}))
        return out


@pytest.fixture()
def answer_value_judge():
    """A fresh :class:`AnswerValueJudge` backend class, registered as ``answer-value-judge``
    for the test (``from_pretrained(..., backend="answer-value-judge")``)."""
    from habitat_eqarm.rewards.backends.base import BACKENDS, RewardBackend

    made = []

    class Judge(AnswerValueJudge, RewardBackend):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    Judge.made = made
    BACKENDS[Judge.name] = Judge
    yield Judge
    BACKENDS.pop(Judge.name, None)
