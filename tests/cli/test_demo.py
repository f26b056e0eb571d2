import json
import subprocess
import sys

import pytest

from habitat_eqarm.cli.main import main

FAST = ["--k", "2", "--max_new_tokens", "6"]


def test_demo_scores_true_and_wrong_answers_on_the_real_episode(
    openeqa_dir, tiny_model_path, tmp_path, capsys
):
    args = ["demo", "--data", str(openeqa_dir), "--out", str(tmp_path), *FAST]
    assert main([*args, "--model", str(tiny_model_path)]) == 0
    printed = capsys.readouterr().out
    assert "168 frames" in printed and "[0, 42, 84, 125, 167]" in printed
    assert "| How many chairs are around the dining table? | Four chairs | no |" in printed
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["keyframes"] == [0, 42, 84, 125, 167]
    assert summary["frame_size"] == [1280, 720]
    assert len(summary["questions"]) == 3 and len(summary["answers"]) == 6
    answers = summary["answers"]
    assert [a["meta"]["answer_is_true"] for a in answers] == [True, False] * 3
    assert answers[0]["predicted_answer"] == "Eight chairs"
    assert all(len(j["samples"]) == 2 for j in summary["judgements"])
    assert summary["untrained_default_model"] is False
    report = (tmp_path / "report.md").read_text()
    assert "![keyframes](contact_sheet.png)" in report and "| Four chairs | no |" in report
    # the RL part: 3 questions x 2 answers played through EMEQAEnv + EQARMReward
    gym_rows = report.split("EMEQAEnv + EQARMReward")[1].strip().splitlines()[2:]
    assert len(gym_rows) == 6 and all("| 168 |" in row for row in gym_rows)  # each frame once
    from PIL import Image

    with Image.open(tmp_path / "contact_sheet.png") as sheet:
        assert sheet.width > 5 * 300  # five keyframes side by side


def test_demo_without_data_or_model_says_so_and_still_runs(tmp_path, monkeypatch, capsys):
    import habitat_eqarm.cli.demo as demo

    monkeypatch.setattr(demo, "find_openeqa_dir", lambda: None)  # a machine without OpenEQA
    monkeypatch.setenv("EQARM_CACHE", str(tmp_path / "cache"))  # the tiny default is built here
    assert (
        main(["demo", "--out", str(tmp_path / "out"), "--keyframe_method", "diverse", *FAST]) == 0
    )
    printed = capsys.readouterr().out
    assert "OpenEQA was not found" in printed and "synthetic episode" in printed
    assert "RANDOM weights" in printed and "scores are meaningless" in printed
    summary = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert summary["frames"] == 60 and len(summary["keyframes"]) == 5
    assert summary["untrained_default_model"] is True
    assert len(summary["answers"]) == 18
    for true, wrong in zip(summary["answers"][::2], summary["answers"][1::2], strict=True):
        assert true["predicted_answer"] == true["gt_answer"] != wrong["predicted_answer"]
    assert len(list((tmp_path / "cache").glob("tiny-qwen2-vl-v*-seed0/model.safetensors"))) == 1
    assert "As an RL reward" in printed and "frames seen" in printed


def test_demo_on_a_given_episode_and_yaml_config(tmp_path, synthetic_folder, tiny_model_path):
    memory, _ = synthetic_folder
    config = tmp_path / "demo.yaml"
    config.write_text(
        f"episode: {memory.path}\nnum_keyframes: 3\nout: {tmp_path / 'out'}\n"
        f"model: {tiny_model_path}\nk: 1\nmax_new_tokens: 4\n"
    )
    assert main(["demo", "--config", str(config)]) == 0
    summary = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert summary["keyframes"] == [0, 30, 59] and summary["answers"] == []


def test_score_command_prints_samples_and_score(demo_video, tiny_model_path, capsys):
    args = ["score", "--episode", str(demo_video), "--question", "How many chairs?"]
    args += ["--answer", "Eight", "--reasoning", "I saw a table.", "Eight chairs.", *FAST]
    assert main([*args, "--model", str(tiny_model_path), "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    assert "--- sample 1/2" in printed and "--- sample 2/2" in printed
    assert "valid of 2)" in printed
    assert main([*args, "--model", str(tiny_model_path), "--json_out", "true"]) == 0
    judgement = json.loads(capsys.readouterr().out)
    assert judgement["keyframe_indices"] == [0, 42, 84, 125, 167] and len(judgement["samples"]) == 2


def test_bad_episode_is_a_one_line_error(tmp_path, capsys):
    assert main(["demo", "--episode", str(tmp_path / "missing.mp4"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "eqarm demo: error:" in err and "missing.mp4: no such episode folder" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["--help"], []])
def test_console_script_help(args):
    script = [sys.executable, "-m", "habitat_eqarm.cli.main"]
    out = subprocess.run([*script, *args], capture_output=True, text=True, check=True).stdout
    assert all(verb in out for verb in ("demo", "score", "eval"))


def test_unknown_command():
    script = [sys.executable, "-m", "habitat_eqarm.cli.main", "frobnicate"]
    bad = subprocess.run(script, capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'frobnicate'" in bad.stderr
