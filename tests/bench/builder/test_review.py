import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from habitat_eqarm.bench.builder.review import (
    ReviewConfig,
    ReviewError,
    ReviewSession,
    default_out,
    load_shard,
    shard_of,
)
from habitat_eqarm.bench.builder.review_server import ReviewServer
from habitat_eqarm.data import EQAInstance, read_jsonl, write_jsonl

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = os.environ.get("EQARM_REVIEW_SCREENSHOT")  # keep the page's picture there


@pytest.fixture()
def judged(demo_questions, tmp_path):
    """4 judged responses to the real demo questions; the last one without a judge score."""
    rows = []
    for n, (q, answer, score) in enumerate(
        [
            (demo_questions[0], "Six chairs", 4),
            (demo_questions[0], "Eight chairs", 9),
            (demo_questions[1], "Turn left", 2),
            (demo_questions[2], "In the bedroom", None),
        ]
    ):
        rows.append(
            EQAInstance(
                question_id=f"{q.question_id}#{n}",
                question=q.question,
                category=q.category,
                source=q.source,
                episode_id=q.episode_id,
                gt_answer=q.gt_answer,
                predicted_answer=answer,
                reasoning_steps=["At first I see the living room.", "Later I reach the table."],
                episode_path=q.episode_path,
                keyframe_indices=[0, 60, 120],
                gt_score=score,
                gt_critique=None if score is None else f"Critique {n}: eight chairs stand there.",
                meta={
                    "judge": {"leak": "uses the reference answer's word(s) 8" if n == 0 else None}
                },
            )
        )
    return write_jsonl(tmp_path / "judged.jsonl", rows), rows


def post(url, body, token, host=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Review-Token"] = token
    if host:
        headers["Host"] = host
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_shards_split_by_question_and_cover_everything(judged):
    path, rows = judged
    shards = [load_shard(ReviewConfig(data=str(path), reviewer=i, of=3)) for i in range(3)]
    ids = [inst.question_id for shard in shards for inst in shard]
    assert sorted(ids) == sorted(r.question_id for r in rows)
    assert shard_of(rows[0].question_id, 3) == shard_of(rows[1].question_id, 3)  # same question
    assert (
        default_out(ReviewConfig(data=str(path), reviewer=1, of=3)).name == "verified.r1of3.jsonl"
    )
    with pytest.raises(ValueError, match=r"--reviewer must be in 0\.\.2"):
        load_shard(ReviewConfig(data=str(path), reviewer=3, of=3))


def test_session_rules_and_resume(judged, tmp_path):
    _, rows = judged
    out = tmp_path / "verified.jsonl"
    session = ReviewSession(rows, out, "ann")
    with pytest.raises(ReviewError, match="gave no score"):
        session.decide(rows[3].question_id, "accept")
    with pytest.raises(ReviewError, match=r"integer 0\.\.10"):
        session.decide(rows[0].question_id, "edit", 11)
    with pytest.raises(ReviewError, match="nothing to undo"):
        session.undo()
    session.decide(rows[0].question_id, "edit", 5)
    session.decide(rows[0].question_id, "accept")  # a later decision overrides
    session.undo()  # back to the edit
    session.close()
    with out.with_name(out.name + ".decisions.jsonl").open("a") as fh:
        fh.write('{"seq": 3, "act')  # a line torn by a kill
    again = ReviewSession(rows, out, "ann")
    assert again.decisions[rows[0].question_id]["score"] == 5
    assert [r.gt_score for r in read_jsonl(out)] == [5]
    assert read_jsonl(out)[0].meta["review"]["status"] == "edited"
    again.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_review_page_clicked_through_in_chromium(judged, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    _, rows = judged
    out = tmp_path / "verified.jsonl"
    server = ReviewServer(ReviewSession(rows, out, "ann"), port=0, frame_width=320).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--headless", "--no-sandbox", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']")
            page.wait_for_function(
                "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
            )
            assert page.locator("#frames img").count() == 3
            assert page.inner_text("#gt-answer") == "Eight chairs"
            assert page.is_visible("#leak") and "reveal" in page.inner_text("#leak")
            assert page.inner_text("#progress").startswith("0 / 4 reviewed")
            page.screenshot(path=str(SCREENSHOT or tmp_path / "review.png"), full_page=True)

            page.keyboard.press("a")  # item 0: accept the judge's 4
            page.wait_for_function("document.getElementById('item-id').textContent.endsWith('#1')")
            page.keyboard.press("3")  # item 1: a digit starts an edit...
            page.keyboard.press("Enter")  # ...Enter saves it
            page.wait_for_function("document.getElementById('item-id').textContent.endsWith('#2')")
            page.click("#reject")  # item 2: reject
            page.wait_for_function("document.getElementById('item-id').textContent.endsWith('#3')")
            assert page.is_disabled("#accept")  # item 3 has no judge score
            page.keyboard.press("u")  # undo the reject: back on item 2, undecided
            page.wait_for_function("document.getElementById('item-id').textContent.endsWith('#2')")
            assert page.inner_text("#decision") == "undecided"
            assert page.inner_text("#progress").startswith("2 / 4 reviewed")
            page.fill("#score", "10")
            page.click("#save-score")
            page.wait_for_function("document.getElementById('item-id').textContent.endsWith('#3')")
            page.keyboard.press("a")  # disabled: nothing happens
            page.keyboard.press("r")
            page.wait_for_selector("#done-banner", state="visible")
            assert page.inner_text("#progress").startswith("4 / 4 reviewed · 1 accepted · 2 edited")
            page.keyboard.press("ArrowLeft")
            assert page.inner_text("#decision") == "edited (score 10)"
            browser.close()
        status, reply = post(server.url + "api/undo", {}, token=None)
        assert status == 403 and "token" in reply["error"]
        status, _ = post(server.url + "api/undo", {}, server.token, host="evil.example:80")
        assert status == 403
    finally:
        server.close()
    verified = read_jsonl(out)
    assert [(v.question_id[-2:], v.gt_score) for v in verified] == [
        ("#0", 4),
        ("#1", 3),
        ("#2", 10),
    ]
    assert [v.meta["review"]["status"] for v in verified] == ["accepted", "edited", "edited"]
    (rejected,) = read_jsonl(tmp_path / "verified.rejected.jsonl")
    assert rejected.question_id.endswith("#3") and rejected.meta["review"]["reviewer"] == "ann"
    events = out.with_name("verified.jsonl.decisions.jsonl").read_text().splitlines()
    assert [json.loads(e)["action"] for e in events] == [
        "accept", "edit", "reject", "undo", "edit", "reject"
    ]  # fmt: skip
    resumed = ReviewSession(rows, out, "ann")  # a restarted server shows the same state
    assert resumed.progress() == {"total": 4, "done": 4, "accepted": 1, "edited": 2, "rejected": 1}
    resumed.close()


def test_the_review_command_serves_until_interrupted(judged, tmp_path):
    path, rows = judged
    command = [sys.executable, "-m", "habitat_eqarm.cli.main", "bench", "review"]
    command += ["--data", str(path), "--port", "0", "--name", "ann"]
    # A shell without job control starts background jobs with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the server Ctrl+C's default, as a terminal does.
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].startswith("ann: 0 of 4 items decided")
        url = re.search(r"review at (http://127\.0\.0\.1:\d+/)", lines[1]).group(1)
        with urllib.request.urlopen(url) as reply:
            token = re.search(r'const TOKEN = "([^"]+)"', reply.read().decode()).group(1)
        status, _ = post(url + "api/decide", {"id": rows[1].question_id, "action": "accept"}, token)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "every decision so far is saved" in out
    (verified,) = read_jsonl(tmp_path / "verified.jsonl")
    assert verified.question_id == rows[1].question_id and verified.gt_score == 9


def test_without_the_api_extra_the_command_says_what_to_install(judged, monkeypatch, capsys):
    from habitat_eqarm.cli import bench_review

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    monkeypatch.delitem(sys.modules, "habitat_eqarm.bench.builder.review_server")
    assert bench_review.main(ReviewConfig(data=str(judged[0]), port=0)) == 1
    assert "pip install 'habitat-eqarm[api]'" in capsys.readouterr().err
