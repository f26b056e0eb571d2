import json

import pytest

from habitat_eqarm.bench.builder.journal import AppendLog, Journal, JournalError, repair_torn_tail


def test_a_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"question_id": "a"}\n{"question_id": "b", "tor')
    with Journal(path, {"model": "m"}) as journal:
        assert journal.torn_bytes == len('{"question_id": "b", "tor')
        assert set(journal.entries) == {"a"}
        journal.add({"question_id": "b", "x": 1})
    lines = path.read_text().splitlines()
    assert [json.loads(x)["question_id"] for x in lines] == ["a", "b"]
    assert repair_torn_tail(path) == 0  # whole lines only: nothing to cut


def test_no_id_is_written_twice(tmp_path):
    with Journal(tmp_path / "j.jsonl", {}) as journal:
        journal.add({"question_id": "a"})
        with pytest.raises(JournalError, match="already finished"):
            journal.add({"question_id": "a"})
    (tmp_path / "j.jsonl").write_text('{"question_id": "a"}\n{"question_id": "a"}\n')
    with pytest.raises(JournalError, match=r"j\.jsonl:2: id 'a' appears twice"):
        Journal(tmp_path / "j.jsonl", {}).open()


def test_a_second_writer_is_refused_and_the_lock_is_released(tmp_path):
    path = tmp_path / "j.jsonl"
    first = AppendLog(path).open()
    with pytest.raises(JournalError, match="another run is writing"):
        AppendLog(path).open()
    first.close()
    AppendLog(path).open().close()


def test_resuming_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path, {"model": "m", "seed": 0}) as journal:
        journal.add({"question_id": "a"})
    with pytest.raises(JournalError, match="model: 'm' -> 'other'"):
        Journal(path, {"model": "other", "seed": 0}).open()
    with Journal(path, {"model": "m", "seed": 0, "new_key": 1}) as journal:  # new keys are fine
        assert set(journal.entries) == {"a"}


def test_a_corrupt_middle_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"question_id": "a"}\nnot json\n{"question_id": "b"}\n')
    with pytest.raises(JournalError, match=r"j\.jsonl:2: not valid JSON"):
        Journal(path, {}).open()
