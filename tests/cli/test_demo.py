import json
import subprocess
import sys

from habitat_eqarm.cli.main import main


def test_demo_on_the_real_openeqa_episode(openeqa_dir, tmp_path, capsys):
    assert main(["demo", "--data", str(openeqa_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "168 frames" in printed and "[0, 42, 84, 125, 167]" in printed
    assert "How many chairs are around the dining table?" in printed
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["keyframes"] == [0, 42, 84, 125, 167]
    assert summary["frame_size"] == [1280, 720]
    assert len(summary["questions"]) == 3
    assert (tmp_path / "questions.md").read_text().startswith("| # | category |")
    from PIL import Image

    with Image.open(tmp_path / "contact_sheet.png") as sheet:
        assert sheet.width > 5 * 300  # five keyframes side by side


def test_demo_falls_back_to_a_synthetic_episode(tmp_path, monkeypatch, capsys):
    import habitat_eqarm.cli.demo as demo

    monkeypatch.setattr(demo, "find_openeqa_dir", lambda: None)  # a machine without OpenEQA
    assert main(["demo", "--out", str(tmp_path), "--keyframe_method", "diverse"]) == 0
    printed = capsys.readouterr().out
    assert "OpenEQA was not found" in printed and "synthetic episode" in printed
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["frames"] == 60 and len(summary["keyframes"]) == 5
    assert all(q["gt_answer"] for q in summary["questions"])


def test_demo_on_a_given_episode_and_yaml_config(tmp_path, synthetic_folder):
    memory, _ = synthetic_folder
    config = tmp_path / "demo.yaml"
    config.write_text(f"episode: {memory.path}\nnum_keyframes: 3\nout: {tmp_path / 'out'}\n")
    assert main(["demo", "--config", str(config)]) == 0
    summary = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert summary["keyframes"] == [0, 30, 59]


def test_console_script_help_and_unknown_command():
    script = [sys.executable, "-m", "habitat_eqarm.cli.main"]
    out = subprocess.run([*script, "--help"], capture_output=True, text=True, check=True).stdout
    assert "demo" in out
    bad = subprocess.run([*script, "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr


def test_bad_episode_is_a_one_line_error(tmp_path, capsys):
    assert main(["demo", "--episode", str(tmp_path / "missing.mp4"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "eqarm demo: error:" in err and "missing.mp4: no such episode folder" in err
    assert "Traceback" not in err
