import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from habitat_eqarm.data import (
    EQAInstance,
    InstanceError,
    dataset_features,
    from_dataset,
    read_jsonl,
    to_dataset,
    write_jsonl,
)
from habitat_eqarm.data.schema import FIELD_NAMES

text = st.text(max_size=40)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), text)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)

instances = st.builds(
    EQAInstance,
    question_id=st.text(min_size=1, max_size=20),
    question=text,
    category=text,
    source=st.sampled_from(["hm3d", "scannet", "other"]),
    episode_id=text,
    gt_answer=st.none() | text,
    predicted_answer=st.none() | text,
    reasoning_steps=st.lists(text, max_size=4),
    episode_path=st.none() | text,
    keyframe_indices=st.lists(st.integers(0, 10_000), max_size=6),
    gt_score=st.none() | st.integers(0, 10),
    gt_critique=st.none() | text,
    meta=st.dictionaries(text, json_value, max_size=4),
)


def full_instance(**overrides) -> EQAInstance:
    fields = dict(
        question_id="q1",
        question="What colour is the sofa?",
        category="attribute recognition",
        source="hm3d",
        episode_id="hm3d-v0/000-hm3d-x",
        gt_answer="Grey",
        predicted_answer="Grey",
        reasoning_steps=["I see a sofa.", "It is grey."],
        episode_path="/data/hm3d-v0/000-hm3d-x",
        keyframe_indices=[0, 42, 84],
        gt_score=8,
        gt_critique="Grounded and correct.",
        meta={"prompt_id": "rm-v1", "nested": {"a": [1, 2]}},
    )
    fields.update(overrides)
    return EQAInstance(**fields)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instances, max_size=5))
def test_jsonl_round_trip_is_exact(tmp_path_factory, batch):
    path = tmp_path_factory.mktemp("jsonl") / "x.jsonl"
    write_jsonl(path, batch)
    assert read_jsonl(path) == batch


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instances, min_size=1, max_size=4))
def test_dataset_round_trip_is_exact(batch):
    dataset = to_dataset(batch)
    assert dataset.features == dataset_features()
    assert from_dataset(dataset) == batch


def test_dataset_columns_are_the_documented_schema():
    dataset = to_dataset([full_instance()])
    assert tuple(dataset.column_names) == FIELD_NAMES
    row = dataset[0]
    assert json.loads(row["meta"]) == {"prompt_id": "rm-v1", "nested": {"a": [1, 2]}}
    assert row["keyframe_indices"] == [0, 42, 84]


def test_dataset_saved_to_disk_round_trips(tmp_path):
    from datasets import load_from_disk

    batch = [full_instance(), full_instance(question_id="q2", gt_score=None, meta={})]
    to_dataset(batch).save_to_disk(tmp_path / "ds")
    assert from_dataset(load_from_disk(tmp_path / "ds")) == batch


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gt_score": 11}, "gt_score"),
        ({"gt_score": -1}, "gt_score"),
        ({"gt_score": 7.5}, "gt_score"),
        ({"gt_score": True}, "gt_score"),
        ({"reasoning_steps": "one string"}, "reasoning_steps"),
        ({"keyframe_indices": [0, -3]}, "keyframe_indices"),
        ({"question": None}, "question"),
        ({"meta": []}, "meta"),
    ],
)
def test_bad_fields_are_rejected_by_name(overrides, message):
    with pytest.raises(InstanceError, match=message):
        full_instance(**overrides)


def test_integral_float_score_from_json_becomes_int():
    assert full_instance(gt_score=7.0).gt_score == 7


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(full_instance().to_dict())
    path.write_text(good + "\n" + '{"question_id": "q2"}\n')
    with pytest.raises(InstanceError, match=r"bad\.jsonl:2: missing required field\(s\) question"):
        read_jsonl(path)
    path.write_text(good + "\n\n{not json\n")
    with pytest.raises(InstanceError, match=r"bad\.jsonl:3: not valid JSON"):
        read_jsonl(path)
    path.write_text(json.dumps({**full_instance().to_dict(), "score": 3}) + "\n")
    with pytest.raises(InstanceError, match=r"bad\.jsonl:1: unknown field\(s\) score"):
        read_jsonl(path)


def test_write_jsonl_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [full_instance()])
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_jsonl(path, [full_instance(question_id="other")])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temp file left


def test_meta_that_is_not_json_names_the_instance(tmp_path):
    inst = full_instance(meta={"when": object()})
    with pytest.raises(InstanceError, match="instance 'q1': not JSON-serialisable"):
        write_jsonl(tmp_path / "x.jsonl", [inst])
    with pytest.raises(InstanceError, match="not JSON-serialisable"):
        full_instance(meta={"x": float("nan")}).to_dict()


def test_a_question_id_given_twice_is_refused_naming_where():
    from habitat_eqarm.data.schema import InstanceError, check_unique_ids

    a, b = EQAInstance(question_id="a", question="?"), EQAInstance(question_id="b", question="?")
    check_unique_ids([("x.jsonl", [a]), ("y.jsonl", [b])])
    with pytest.raises(InstanceError, match=r"^x\.jsonl: duplicate question_id 'a' \(given twice"):
        check_unique_ids([("x.jsonl", [a, b, a])])
    with pytest.raises(InstanceError, match=r"^y\.jsonl: .* 'a' \(it is also in x\.jsonl\)$"):
        check_unique_ids([("x.jsonl", [a]), ("y.jsonl", [b, a])])
