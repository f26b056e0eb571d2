import json
import random

import pytest

from habitat_eqarm.bench.builder.common import StageReport
from habitat_eqarm.bench.builder.split import (
    SplitConfig,
    assign,
    check_disjoint,
    gather,
    pick_rooms,
)
from habitat_eqarm.cli.main import main
from habitat_eqarm.data import EQAInstance, InstanceError, load_openeqa, read_jsonl, write_jsonl
from habitat_eqarm.data.openeqa import room_of


@pytest.fixture(scope="module")
def reviewed(openeqa_dir, tmp_path_factory):
    """Every real OpenEQA v0 question with 2 reviewed responses (scores drawn at random)."""
    rng = random.Random(0)
    rows = []
    for q in load_openeqa(openeqa_dir / "open-eqa-v0.json"):
        for n in range(2):
            status = "rejected" if rng.random() < 0.02 else "accepted"
            rows.append(
                EQAInstance(
                    question_id=f"{q.question_id}#{n}",
                    question=q.question,
                    category=q.category,
                    source=q.source,
                    episode_id=q.episode_id,
                    gt_answer=q.gt_answer,
                    predicted_answer="something",
                    gt_score=rng.randint(0, 10),
                    meta={"review": {"status": status}},
                )
            )
    folder = tmp_path_factory.mktemp("reviewed")
    half = len(rows) // 2  # two reviewers' files
    return [
        write_jsonl(folder / "a.jsonl", rows[:half]),
        write_jsonl(folder / "b.jsonl", rows[half:]),
    ]


def split(reviewed, out, *extra):
    data = ",".join(str(p) for p in reviewed)
    assert main(["bench", "split", "--data", data, "--out", str(out), *extra]) == 0
    return {name: read_jsonl(out / f"{name}.jsonl") for name in ("test", "train")}


def test_paper_like_splits_share_no_episode(reviewed, tmp_path):
    splits = split(reviewed, tmp_path / "s")
    test, train = splits["test"], splits["train"]
    episodes = {name: {i.episode_id for i in part} for name, part in splits.items()}
    assert not episodes["test"] & episodes["train"]
    assert {i.source for i in train} == {"scannet"}
    assert len({i.episode_id for i in test if i.source == "hm3d"}) == 63  # every HM3D episode
    scannet_test = sum(i.source == "scannet" for i in test)
    assert abs(scannet_test - len(train)) < 0.1 * len(train)  # about half of ScanNet, by episode
    assert all(i.meta["review"]["status"] != "rejected" for i in test + train)

    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["room_disjoint"] is summary["episode_disjoint"] is True
    assert (
        summary["splits"]["train"]["rooms"]
        + summary["splits"]["test"]["by_source"]["scannet"]["rooms"]
        == 74
    )
    rejected = summary["report"]["skipped_by_reason"]["rejected by a reviewer"]
    assert len(test) + len(train) + rejected == 2 * 1636
    assert summary["splits"]["test"]["by_source"]["hm3d"]["questions"] <= 557
    md = (tmp_path / "s" / "summary.md").read_text()
    assert "| train (fine-tuning D_F) | scannet |" in md
    assert "| object recognition |" in md and "Room-disjoint: yes" in md

    again = split(reviewed, tmp_path / "s2")  # seeded: the same assignment
    assert [i.question_id for i in again["train"]] == [i.question_id for i in train]
    other = split(reviewed, tmp_path / "s3", "--seed", "1", "--benchmark_scannet", "300")
    other_test = [i for i in other["test"] if i.source == "scannet"]
    assert 250 <= len(other_test) <= 350
    assert not {i.episode_id for i in other["test"]} & {i.episode_id for i in other["train"]}


def test_unreviewed_and_duplicate_inputs(reviewed, tmp_path, capsys):
    rows = read_jsonl(reviewed[0])[:10]
    for row in rows:
        row.meta = {}
    unreviewed = write_jsonl(tmp_path / "u.jsonl", rows)
    from habitat_eqarm.bench.builder.split import run_split

    _, report = run_split(SplitConfig(data=str(unreviewed), out=str(tmp_path / "o")))
    assert report.to_dict()["skipped_by_reason"] == {
        "not reviewed (--require_review false keeps it)": 10
    }
    _, report = run_split(
        SplitConfig(data=str(unreviewed), out=str(tmp_path / "o"), require_review=False)
    )
    assert report.done_now == 10
    assert (
        main(["bench", "split", "--data", f"{unreviewed},{unreviewed}", "--out", str(tmp_path)])
        == 1
    )
    assert "is also in" in capsys.readouterr().err


def test_check_disjoint_catches_a_shared_episode():
    a = EQAInstance(question_id="q1#0", question="?", episode_id="scannet-v0/1")
    b = EQAInstance(question_id="q2#0", question="?", episode_id="scannet-v0/1")
    with pytest.raises(InstanceError, match=r"scannet-v0/1 \(test: scannet-v0/1; train: scan"):
        check_disjoint({"test": [a], "train": [b]})


def test_pick_rooms_gets_close_to_the_target():
    sizes = {f"e{i}": 1 + i % 7 for i in range(50)}
    chosen = pick_rooms(sizes, 100, seed=0)
    assert abs(sum(sizes[e] for e in chosen) - 100) <= 1
    assert pick_rooms(sizes, 0, seed=0) == set()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_of_every_real_question_share_no_room(reviewed, seed):
    """OpenEQA's 89 ScanNet episodes are 74 rooms: rescans of a room stay on one side."""
    instances = gather(SplitConfig(data=",".join(map(str, reviewed))), StageReport("split"))
    splits = assign(instances, SplitConfig(seed=seed))
    rooms = {name: {room_of(i.episode_id) for i in part} for name, part in splits.items()}
    assert not rooms["test"] & rooms["train"]
    scannet = {room_of(i.episode_id) for i in instances if i.source == "scannet"}
    assert len(scannet) == 74 and len(rooms["train"]) + len(rooms["test"]) == 74 + 63
    check_disjoint(splits)


def test_room_of_openeqa_episode_histories():
    assert room_of("scannet-v0/186-scannet-scene0549_01") == "scannet/scene0549"
    assert room_of("scannet-v0/020-scannet-scene0549_00") == "scannet/scene0549"
    assert room_of("hm3d-v0/000-hm3d-BFRyYbPCCPE") == "hm3d/BFRyYbPCCPE"
    assert room_of("assets/open-eqa-hm3d-demo") == "assets/open-eqa-hm3d-demo"


def test_check_disjoint_names_every_shared_room():
    def inst(qid, episode):
        return EQAInstance(question_id=qid, question="?", source="scannet", episode_id=episode)

    splits = {
        "test": [inst("a#0", "scannet-v0/1-scannet-scene0001_00"), inst("b#0", "x/scene0002_00")],
        "train": [inst("c#0", "scannet-v0/9-scannet-scene0001_01"), inst("d#0", "x/scene0002_02")],
    }
    with pytest.raises(InstanceError, match=r"2 room\(s\) in both test and train") as err:
        check_disjoint(splits)
    message = str(err.value)
    assert "scannet/scene0001 (test: scannet-v0/1-scannet-scene0001_00" in message
    assert "train: scannet-v0/9-scannet-scene0001_01)" in message and "scene0002" in message
