import json
from collections import Counter

import pytest

from habitat_eqarm.data import CATEGORIES, OpenEQAError, load_openeqa
from habitat_eqarm.data.openeqa import source_of


def test_all_real_questions_load(openeqa_dir):
    instances = load_openeqa(openeqa_dir / "open-eqa-v0.json")
    assert len(instances) == 1636
    episodes = {i.episode_id: i.source for i in instances}
    assert len(episodes) == 152
    assert Counter(episodes.values()) == {"hm3d": 63, "scannet": 89}
    assert Counter(i.source for i in instances) == {"hm3d": 557, "scannet": 1079}
    assert set(Counter(i.category for i in instances)) == set(CATEGORIES)
    assert all(i.gt_answer and i.question and i.episode_path is None for i in instances)
    assert sum(bool(i.meta.get("extra_answers")) for i in instances) > 0


def test_a_eqa_subset(openeqa_dir):
    subset = load_openeqa(
        openeqa_dir / "open-eqa-v0.json", subset_ids=openeqa_dir / "open-eqa-v0-184-questions.json"
    )
    assert len(subset) == 184
    with pytest.raises(OpenEQAError, match="1 subset id"):
        load_openeqa(openeqa_dir / "open-eqa-v0.json", subset_ids=["not-a-question-id"])


def test_demo_questions_resolve_to_the_demo_video(openeqa_dir):
    instances = load_openeqa(openeqa_dir / "open-eqa-demo-data.json", data_root=openeqa_dir)
    assert len(instances) == 3
    assert {i.episode_path for i in instances} == {str(openeqa_dir / "open-eqa-hm3d-demo.mp4")}
    assert {i.source for i in instances} == {"hm3d"}


def write_questions(path, records):
    path.write_text(json.dumps(records))
    return path


def record(**overrides):
    rec = {
        "question": "Where is the clock?",
        "answer": "On the wall",
        "category": "object localization",
        "question_id": "q-1",
        "episode_history": "scannet-v0/002-scannet-scene0709_00",
    }
    rec.update(overrides)
    return rec


def test_episode_resolution_prefers_folder_then_videos(tmp_path):
    root = tmp_path / "data"
    (root / "scannet-v0" / "002-scannet-scene0709_00").mkdir(parents=True)
    (root / "hm3d-v0").mkdir()
    (root / "hm3d-v0" / "000-hm3d-a-0.mp4").write_bytes(b"")
    (root / "hm3d-v0" / "001-hm3d-b.mp4").write_bytes(b"")
    qs = write_questions(
        tmp_path / "q.json",
        [
            record(),
            record(question_id="q-2", episode_history="hm3d-v0/000-hm3d-a"),
            record(question_id="q-3", episode_history="hm3d-v0/001-hm3d-b"),
        ],
    )
    paths = [i.episode_path for i in load_openeqa(qs, data_root=root)]
    assert paths == [
        str(root / "scannet-v0" / "002-scannet-scene0709_00"),
        str(root / "hm3d-v0" / "000-hm3d-a-0.mp4"),
        str(root / "hm3d-v0" / "001-hm3d-b.mp4"),
    ]


def test_missing_episode_error_skip_keep(tmp_path):
    (tmp_path / "data").mkdir()
    qs = write_questions(tmp_path / "q.json", [record()])
    with pytest.raises(OpenEQAError, match=r"question q-1: episode .* not found \(tried"):
        load_openeqa(qs, data_root=tmp_path / "data")
    assert load_openeqa(qs, data_root=tmp_path / "data", on_missing="skip") == []
    (kept,) = load_openeqa(qs, data_root=tmp_path / "data", on_missing="keep")
    assert kept.episode_path is None
    with pytest.raises(OpenEQAError, match="data root is not a folder"):
        load_openeqa(qs, data_root=tmp_path / "nowhere")


@pytest.mark.parametrize(
    "field", ["question", "answer", "category", "question_id", "episode_history"]
)
def test_record_missing_a_field_names_file_item_and_field(tmp_path, field):
    rec = record()
    del rec[field]
    qs = write_questions(tmp_path / "q.json", [record(question_id="ok"), rec])
    with pytest.raises(OpenEQAError, match=rf"q\.json\[1\]: missing or empty field\(s\) {field}"):
        load_openeqa(qs)


@pytest.mark.parametrize(
    ("episode", "problem"),
    [
        ("../outside", "escapes the data root"),
        ("hm3d-v0/../../etc", "escapes the data root"),
        ("/etc/passwd", "must be a relative path"),
        ("\\\\server\\share", "must be a relative path"),
        ("C:/Windows", "escapes the data root"),
    ],
)
def test_episode_history_escaping_the_root_is_rejected(tmp_path, episode, problem):
    qs = write_questions(tmp_path / "q.json", [record(episode_history=episode)])
    with pytest.raises(OpenEQAError, match=rf"q\.json\[0\]: episode_history .* {problem}"):
        load_openeqa(qs, data_root=tmp_path)


def test_symlink_out_of_the_root_is_rejected(tmp_path):
    (tmp_path / "data" / "hm3d-v0").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (tmp_path / "data" / "hm3d-v0" / "ep").symlink_to(tmp_path / "secret")
    qs = write_questions(tmp_path / "q.json", [record(episode_history="hm3d-v0/ep")])
    with pytest.raises(OpenEQAError, match="resolves outside the data root"):
        load_openeqa(qs, data_root=tmp_path / "data")


def test_bad_files(tmp_path):
    with pytest.raises(OpenEQAError, match=r"none\.json: file not found"):
        load_openeqa(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(OpenEQAError, match=r"bad\.json: not valid JSON"):
        load_openeqa(bad)
    bad.write_text('{"question": "x"}')
    with pytest.raises(OpenEQAError, match=r"bad\.json: expected a JSON list"):
        load_openeqa(bad)


@pytest.mark.parametrize(
    ("episode", "source"),
    [
        ("hm3d-v0/000-hm3d-BFRyYbPCCPE", "hm3d"),
        ("scannet-v0/002-scannet-scene0709_00", "scannet"),
        ("assets/open-eqa-hm3d-demo", "hm3d"),
        ("mine/episode-7", "other"),
    ],
)
def test_source_of(episode, source):
    assert source_of(episode) == source
