import json
import random

import pytest

from habitat_eqarm.bench.builder.export import ExportConfig, run_export
from habitat_eqarm.cli.main import main
from habitat_eqarm.data import EQAInstance, load_openeqa, read_jsonl, write_jsonl
from habitat_eqarm.data.loading import load_instances


@pytest.fixture(scope="module")
def splits(openeqa_dir, tmp_path_factory):
    """Reviewed responses to 200 real OpenEQA questions, split by `eqarm bench split`."""
    rng = random.Random(0)
    rows = [
        EQAInstance(
            question_id=f"{q.question_id}#0",
            question=q.question,
            category=q.category,
            source=q.source,
            episode_id=q.episode_id,
            gt_answer=q.gt_answer,
            predicted_answer="a chair",
            reasoning_steps=["I look around."],
            episode_path=f"/data/openeqa/{q.episode_id}",
            gt_score=rng.randint(0, 10),
            meta={
                "generation": {"model": "gen-m", "prompt_id": "eqarm-gen-v1"},
                "judge": {"model": "judge-m", "prompt_id": "eqarm-judge-v1"},
                "review": {"status": "accepted", "reviewer": "ann"},
            },
        )
        for q in rng.sample(load_openeqa(openeqa_dir / "open-eqa-v0.json"), 200)
    ]
    folder = tmp_path_factory.mktemp("export")
    data = write_jsonl(folder / "verified.jsonl", rows)
    assert main(["bench", "split", "--data", str(data), "--out", str(folder / "splits")]) == 0
    return folder / "splits"


def test_export_is_read_by_eval_loader_trainers_and_datasets(splits, tmp_path):
    out = run_export(
        ExportConfig(splits=str(splits), out=str(tmp_path / "bench"), relative_to="/data/openeqa")
    )
    test, train = read_jsonl(splits / "test.jsonl"), read_jsonl(splits / "train.jsonl")
    loaded = load_instances(out, data_root="/frames")  # what `eqarm eval` reads (split: test)
    assert [i.question_id for i in loaded] == [i.question_id for i in test]
    assert loaded[0].episode_path == f"/frames/{test[0].episode_id}"
    assert loaded[0].meta == test[0].meta and loaded[0].gt_score == test[0].gt_score
    assert len(load_instances(out, split="train")) == len(train)  # what the trainers read

    from datasets import load_dataset

    hub = load_dataset(
        str(out), cache_dir=str(tmp_path / "hf")
    )  # the card's YAML points at the parquet files
    assert hub["test"].num_rows == len(test) and hub["train"].num_rows == len(train)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n") and "path: data/train-*.parquet" in card
    assert "`gen-m` (200)" in card and "`accepted` (200)" in card and "--data_root" in card
    assert "| object recognition |" in card
    assert json.loads((out / "export.json").read_text())["splits"] == {
        "test": len(test), "train": len(train)
    }  # fmt: skip


def test_export_replaces_only_an_earlier_export(splits, tmp_path):
    out = tmp_path / "bench"
    run_export(ExportConfig(splits=str(splits), out=str(out)))
    (out / "stale.txt").write_text("from the first export")
    run_export(ExportConfig(splits=str(splits), out=str(out)))
    assert not (out / "stale.txt").exists() and (out / "dataset_dict.json").is_file()
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not an export: refusing"):
        run_export(ExportConfig(splits=str(splits), out=str(precious)))
    assert (precious / "notes.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".mine.*"))  # the half-built folder was removed
