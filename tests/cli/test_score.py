"""`eqarm score`: its sampling and keyframe options are ScoringConfig's, and reach the model."""

import json

from habitat_eqarm.cli.main import main
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.config import ScoringConfig
from habitat_eqarm.rewards.model import EQARewardModel


def test_score_prints_the_judgement_the_model_gives_for_the_same_config(
    tiny_model_path, synthetic_folder, capsys
):
    memory, questions = synthetic_folder
    folder = memory.path
    options = ["--k", "2", "--max_new_tokens", "6", "--seed", "3", "--num_keyframes", "2"]
    argv = ["score", "--episode", str(folder), "--question", questions[0].question]
    argv += ["--answer", "a red chair", "--model", str(tiny_model_path), *options, "--json_out"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    instance = EQAInstance(
        question_id="cli",
        question=questions[0].question,
        predicted_answer="a red chair",
        episode_path=str(folder),
    )
    config = ScoringConfig(k=2, max_new_tokens=6, seed=3, aggregate="majority")
    with EQARewardModel.from_pretrained(str(tiny_model_path), num_keyframes=2) as model:
        (expected,) = model.score([instance], config)
    assert [s["text"] for s in printed["samples"]] == [s.text for s in expected.samples]
    assert printed["aggregate"] == "majority" and len(printed["samples"]) == 2
    assert printed["keyframe_indices"] == expected.keyframe_indices
    assert len(expected.keyframe_indices) == 2
