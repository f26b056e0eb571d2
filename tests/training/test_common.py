"""The data preparation RFT and C-GRPO share (`training.common`), on the toy set."""

import json
from dataclasses import asdict, dataclass

import pytest

from habitat_eqarm.data import read_jsonl, write_jsonl
from habitat_eqarm.training.common import prepare_dataset, train_with_resume
from habitat_eqarm.training.rft_config import RFTConfig


@dataclass
class Counts:
    instances: int = 0
    skipped_no_gt_score: int = 0
    skipped_too_long: int = 0

    def to_dict(self):
        return asdict(self)


def config(tmp_path, model):
    return RFTConfig(
        output_dir=str(tmp_path / "o"), model_name_or_path=str(model), bf16=False, use_cpu=True
    )


def rows_of(instances):
    return [
        {
            "question_id": inst.question_id,
            "episode_path": inst.episode_path,
            "keyframe_indices": [0],
            "prompt": [{"role": "user", "content": [{"type": "text", "text": inst.question}]}],
        }
        for inst in instances
    ]


def test_rows_are_counted_filtered_by_length_and_the_stats_written(
    tmp_path, tiny_model_path, toy_set
):
    instances = read_jsonl(toy_set[0])[:4]
    instances[0].gt_score = None
    data = write_jsonl(tmp_path / "d.jsonl", instances)
    cfg = config(tmp_path, tiny_model_path)
    cfg.data, cfg.max_pixels = str(data), 20_000
    seen = []

    def make_rows(labelled):
        seen.extend(labelled)
        return rows_of(labelled)

    def tokens(example, processor):  # the second row is "too long"
        return 10 if example["question_id"] == instances[2].question_id else 1

    stats = Counts()
    dataset, processor = prepare_dataset(cfg, "C-GRPO", stats, make_rows, tokens, 5)
    assert [i.question_id for i in seen] == [i.question_id for i in instances[1:]]
    assert stats == Counts(instances=4, skipped_no_gt_score=1, skipped_too_long=1)
    assert [r["question_id"] for r in dataset] == [
        instances[1].question_id,
        instances[3].question_id,
    ]
    assert len(dataset[0]["images"]) == 1  # decoded when the row is read
    assert json.loads((tmp_path / "o" / "cgrpo_stats.json").read_text()) == stats.to_dict()

    with pytest.raises(ValueError, match=r"no example left to train on"):
        train_with_resume(object, cfg, dataset.select([]), processor)


def test_no_row_and_no_data_are_clear_errors(tmp_path, tiny_model_path, toy_set):
    cfg = config(tmp_path, tiny_model_path)
    with pytest.raises(ValueError, match="RFT needs --data"):
        prepare_dataset(cfg, "RFT", Counts(), rows_of, lambda e, p: 1, None)
    cfg.data = str(toy_set[0])
    with pytest.raises(ValueError, match=r"RFT: no usable instance in .*instances"):
        prepare_dataset(cfg, "RFT", Counts(), lambda labelled: [], lambda e, p: 1, None)
    assert (tmp_path / "o" / "rft_stats.json").is_file()  # written before the error
