import json
import shutil

import pytest
from transformers import TrainerCallback

from habitat_eqarm.data import read_jsonl
from habitat_eqarm.testing.learning import format_valid_rate
from habitat_eqarm.training.checkpoints import MARKER, last_complete_checkpoint
from habitat_eqarm.training.rft import canonical_evaluation, prepare, train_rft
from habitat_eqarm.training.rft_config import RFTConfig

CPU = dict(bf16=False, use_cpu=True, activation_checkpointing=False, logging_steps=5)


@pytest.fixture
def toy(toy_set):
    return toy_set


def config(tmp_path, tiny_model_path, toy, **kw):
    instances, candidates = toy
    fields = dict(
        output_dir=str(tmp_path / "rft"),
        model_name_or_path=str(tiny_model_path),
        data=str(instances),
        candidates=str(candidates),
    )
    return RFTConfig(**{**fields, **CPU, **kw})


def test_paper_defaults():
    cfg = RFTConfig(output_dir="x", **CPU)
    assert (cfg.learning_rate, cfg.per_device_train_batch_size, cfg.max_grad_norm) == (1e-6, 1, 5.0)
    assert cfg.max_length is None and cfg.n_rft == 8 and cfg.num_keyframes == 5
    assert RFTConfig.__dataclass_fields__["activation_checkpointing"].default is True


def test_prepare_filters_by_eq1_and_writes_stats(tmp_path, tiny_model_path, toy):
    dataset, _, stats = prepare(config(tmp_path, tiny_model_path, toy))
    written = json.loads((tmp_path / "rft" / "rft_stats.json").read_text())
    assert written == stats.to_dict()
    assert stats.instances == 36 and stats.candidates == 36 * 4
    assert 0 < stats.kept == len(dataset) < stats.candidates - stats.malformed
    assert stats.too_easy_instances > 0  # Eq. 1 drops instances whose candidates all agree
    row = dataset[0]
    assert len(row["images"]) == 5 and row["images"][0].size == (320, 240)
    target = row["completion"][0]["content"][0]["text"]
    assert target.startswith("<critique>") and target.endswith("</score>")
    assert "purple" not in json.dumps(row["prompt"]) or "Predicted answer: purple" in json.dumps(
        row["prompt"]
    )  # the prompt shows the agent's answer, never the reference one
    assert "Reference answer" not in json.dumps(row["prompt"])


def test_instances_without_gt_score_or_frames_are_skipped_and_counted(
    tmp_path, tiny_model_path, toy
):
    instances = read_jsonl(toy[0])
    instances[0].gt_score = None
    from habitat_eqarm.data import write_jsonl

    data = write_jsonl(tmp_path / "partial.jsonl", instances)
    _, _, stats = prepare(config(tmp_path, tiny_model_path, toy, data=str(data), max_tokens=50))
    assert stats.skipped_no_gt_score == 1
    assert stats.skipped_too_long == stats.kept  # every example exceeds a 50-token budget


# Half the smallest rise of the well-formed rate over 5 seeds (docs/testing.md, "RFT").
RFT_MIN_EFFECT = 0.4  # 10 seeds: 0.81 to 1.00


@pytest.mark.slow
def test_rft_teaches_the_format(tiny_model_path, toy, rft_run):
    held_out = read_jsonl(toy[0])[:8]
    before = format_valid_rate(tiny_model_path, held_out)  # sampled at T = 0.8
    assert rft_run.global_step == rft_run.max_steps
    after = format_valid_rate(rft_run.output_dir, held_out)
    assert after - before >= RFT_MIN_EFFECT, (before, after)


@pytest.mark.slow
def test_rft_resumes_from_the_last_complete_checkpoint_only(tmp_path, rft_run):
    out = tmp_path / "rft"
    shutil.copytree(rft_run.output_dir, out)
    # a crash mid-save: a newer checkpoint without the marker is never resumed from
    assert last_complete_checkpoint(out).endswith("checkpoint-200")
    (out / "checkpoint-300").mkdir()
    assert last_complete_checkpoint(out).endswith("checkpoint-200")

    class CountSteps(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            CountSteps.steps += 1

    fields = {**rft_run.fields, "output_dir": str(out), "save_steps": 1000}
    resumed = train_rft(RFTConfig(**fields, max_steps=210), [CountSteps()])
    assert resumed.state.global_step == 210
    assert CountSteps.steps == 10  # continued from step 200, not from 0
    assert (out / "checkpoint-200" / MARKER).is_file()


def test_canonical_evaluation():
    assert canonical_evaluation(" Good. ", 7) == "<critique>Good.</critique><score>7</score>"


def test_train_rft_command_with_the_paper_config_and_cpu_overrides(
    tmp_path, tiny_model_path, toy, capsys
):
    from pathlib import Path

    from habitat_eqarm.cli.main import main

    paper = Path(__file__).resolve().parents[2] / "configs" / "rft.yaml"
    args = ["train", "rft", "--config", str(paper), "--model_name_or_path", str(tiny_model_path)]
    args += [
        "--data",
        str(toy[0]),
        "--candidates",
        str(toy[1]),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    args += ["--bf16", "false", "--use_cpu", "true", "--activation_checkpointing", "false"]
    args += ["--max_steps", "2", "--model_init_kwargs", "{}", "--report_to", "none"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "rejective filter:" in printed and "trained 2 steps" in printed
    assert (tmp_path / "o" / "model.safetensors").is_file()
