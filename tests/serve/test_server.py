"""`eqarm serve` as a client sees it: a real server subprocess with the tiny model on loopback."""

import http.client
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from habitat_eqarm.data import EpisodeMemory
from habitat_eqarm.rewards.backends.chat_format import encode_frame
from habitat_eqarm.rewards.model import Judgement
from habitat_eqarm.testing.server import start_server

pytestmark = pytest.mark.slow  # shares one server subprocess (~10 s to start)


def image_url(seed: int, size=(64, 48)) -> str:
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode_frame(frame, "png")


def chat_body(server, n=1, images=2, **extra):
    content = [{"type": "image_url", "image_url": {"url": image_url(i)}} for i in range(images)]
    content.append({"type": "text", "text": "What is in the room?"})
    return {
        "model": server_model(server),
        "messages": [{"role": "user", "content": content}],
        "n": n,
        "max_tokens": 4,
        **extra,
    }


def server_model(server) -> str:
    return httpx.get(server.url("/health")).json()["model"]


def test_token_is_required_everywhere_but_health(eqarm_server):
    url = eqarm_server.url
    assert httpx.get(url("/health")).status_code == 200
    for method, path in (("GET", "models"), ("GET", "stats"), ("POST", "chat/completions")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            r = httpx.request(method, url(path), headers=headers, json={})
            assert r.status_code == 401, (path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["message"] == "missing or wrong bearer token"
    assert eqarm_server.get("models")["data"][0]["id"] == server_model(eqarm_server)


def test_chat_completions_returns_n_choices(eqarm_server):
    r = eqarm_server.post("chat/completions", chat_body(eqarm_server, n=3, temperature=0.7, seed=5))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "chat.completion" and data["model"] == server_model(eqarm_server)
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert all(isinstance(c["message"]["content"], str) for c in data["choices"])


def test_text_only_requests_alone_and_batched_with_image_ones(eqarm_server):
    """Text-only requests (the builder's LLM-match marks carry no frames) are served alone and
    in one generate call with requests that carry images."""
    sampling = {"n": 2, "temperature": 0.7, "seed": 1}  # K > 1: the shared-prefill path
    for _ in range(2):  # the second one comes after the first left its state on the model
        alone = eqarm_server.post("chat/completions", chat_body(eqarm_server, images=0, **sampling))
        assert alone.status_code == 200, alone.text
        assert [type(c["message"]["content"]) for c in alone.json()["choices"]] == [str, str]
    for _ in range(3):  # concurrency decides the batches: a few rounds make a mixed one certain
        bodies = [chat_body(eqarm_server, images=i % 2, **sampling) for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda b: eqarm_server.post("chat/completions", b), bodies))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        sizes = [r.json()["eqarm_timings"]["batch_size"] for r in responses[::2]]
        if max(sizes) > 4:  # more than the 4 text-only requests: images were in that batch
            return
    pytest.fail(f"no text-only request shared a batch with image requests (sizes {sizes})")


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"model": "gpt-4o"}, 404, "not served here"),
        ({"stream": True}, 400, "stream"),
        ({"n": 1000}, 400, "limit"),
        ({"temperature": -1}, 400, "temperature"),
        ({"image": "http://169.254.169.254/latest"}, 400, "data URL"),
        ({"image": "file:///etc/passwd"}, 400, "data URL"),
        ({"image": "data:image/png;base64,not-base64!"}, 400, "base64"),
        ({"image": "data:text/html;base64,PGI+"}, 400, "not accepted"),
    ],
)
def test_bad_chat_requests_get_clear_errors(eqarm_server, change, status, needle):
    body = chat_body(eqarm_server, images=1)
    if "image" in change:
        body["messages"][0]["content"][0]["image_url"]["url"] = change.pop("image")
    body.update(change)
    r = eqarm_server.post("chat/completions", body)
    assert r.status_code == status and needle in r.json()["error"]["message"], r.text
    assert len(r.text) < 400  # the request body (kilobytes of image) is never echoed


def test_images_of_different_sizes_are_refused(eqarm_server):
    body = chat_body(eqarm_server, images=1)
    body["messages"][0]["content"].insert(
        0, {"type": "image_url", "image_url": {"url": image_url(9, size=(32, 32))}}
    )
    r = eqarm_server.post("chat/completions", body)
    assert r.status_code == 400 and "one size" in r.json()["error"]["message"]


def test_score_with_inline_frames_and_by_path(eqarm_server, synthetic_folder):
    memory, questions = synthetic_folder
    inst = questions[0]
    inst.predicted_answer, inst.reasoning_steps = "a sofa", ["I saw a sofa."]
    frames = [encode_frame(f, "png") for f in memory.frames([0, 10, 20])]
    body = {
        "instances": [inst.to_dict(), inst.to_dict()],
        "frames": [frames, None],  # the second is read from its episode_path by the server
        "k": 2,
        "max_new_tokens": 4,
        "aggregate": "majority",
    }
    r = eqarm_server.post("score", body)
    assert r.status_code == 200, r.text
    first, second = (Judgement.from_dict(j) for j in r.json()["judgements"])
    assert first.question_id == second.question_id == inst.question_id
    assert len(first.samples) == len(second.samples) == 2 and first.aggregate == "majority"
    assert first.keyframe_indices == [0, 1, 2]  # 5 keyframes of 3 frames: every frame once
    assert second.keyframe_indices == EpisodeMemory.from_path(inst.episode_path).keyframes(5)


@pytest.mark.parametrize(
    ("instance", "frames", "status", "needle"),
    [
        ({"question_id": "x", "question": "?", "episode_path": "/etc"}, None, 403, "outside"),
        ({"question_id": "x", "question": "?"}, None, 403, "outside"),
        ({"question_id": "x"}, [], 400, "instances[0]: missing required field(s) question"),
        ({"question_id": "x", "question": "?", "bogus": 1}, [], 400, "unknown field(s) bogus"),
    ],
)
def test_bad_score_requests_get_clear_errors(eqarm_server, instance, frames, status, needle):
    body = {"instances": [instance], "frames": [frames or None]}
    r = eqarm_server.post("score", body)
    assert r.status_code == status and needle in r.json()["error"]["message"], r.text


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Content-Length": str(10**12)}, 413), ({"Transfer-Encoding": "chunked"}, 411)],
)
def test_bodies_must_announce_a_bounded_length(eqarm_server, headers, status):
    host, port = eqarm_server.base_url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/v1/chat/completions")
    for name, value in {**eqarm_server.headers, **headers}.items():
        conn.putheader(name, value)
    conn.endheaders()  # the body never follows: the server must answer without reading it
    response = conn.getresponse()
    assert response.status == status
    conn.close()


def test_concurrent_requests_are_batched(eqarm_server):
    before = eqarm_server.stats()["batching"]
    bodies = [chat_body(eqarm_server, images=1, seed=i) for i in range(8)]
    bodies = [{**b, "seed": 1} for b in bodies]  # same sampling parameters: batchable
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda b: eqarm_server.post("chat/completions", b), bodies))
    assert all(r.status_code == 200 for r in responses)
    after = eqarm_server.stats()["batching"]
    assert after["requests"] - before["requests"] == 8
    assert after["calls"] - before["calls"] < 8  # some requests shared a generate call
    assert max(r.json()["eqarm_timings"]["batch_size"] for r in responses) > 1


def test_injected_fault_then_sigterm_lets_open_requests_finish(tiny_model_path, tmp_path):
    args = ["--max_batch", "1", "--inject_faults", "503:1"]
    server = start_server(tiny_model_path, args, log_path=tmp_path / "log")
    body = chat_body(server, images=1, max_tokens=128, min_tokens=128)
    assert server.post("chat/completions", body).status_code == 503  # --inject_faults
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=server.post("chat/completions", body)))
    thread.start()
    while server.stats()["batching"]["running"] == 0:
        time.sleep(0.01)  # until the request is being generated
    # uvicorn finishes open requests, shuts the app down, then re-raises SIGTERM
    assert server.stop() in (0, -signal.SIGTERM)
    thread.join()
    assert result["r"].status_code == 200 and len(result["r"].json()["choices"]) == 1
    log = server.log()
    assert log.index('"POST /v1/chat/completions HTTP/1.1" 200') > log.index("Shutting down")
    assert "Application shutdown complete" in log


def test_replicas_share_the_load_and_memo_size_zero_turns_the_memo_off(
    tiny_model_path, synthetic_folder, tmp_path
):
    _, questions = synthetic_folder
    root = str(questions[0].episode_path)
    args = ["--replicas", "2", "--memo_size", "0", "--max_wait_ms", "1", "--data_root", root]
    server = start_server(tiny_model_path, args, log_path=tmp_path / "log")
    try:
        assert server.get("/health")["replicas"] == 2
        inst = {**questions[0].to_dict(), "predicted_answer": "a sofa"}
        body = {"instances": [inst], "k": 2, "seed": 3, "max_new_tokens": 4}
        for _ in range(4):  # seeded repeats: with the memo off, each one is generated
            r = server.post("score", body)
            assert r.status_code == 200 and r.json()["judgements"][0]["cached"] is False, r.text
        stats = server.stats()
        assert [rep["requests"] for rep in stats["batching"]["replicas"]] == [2, 2]
        assert stats["memo"] == {"size": 0, "entries": 0, "hits": 0, "misses": 4}
        assert "replicas 2" in server.log()
    finally:
        server.stop()
