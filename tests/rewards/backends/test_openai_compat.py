"""The `openai` backend against the real `eqarm serve` (tiny model, loopback), and its parts."""

import dataclasses
import logging
import socket

import numpy as np
import pytest

from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.rewards.backends.base import GenerationRequest, SamplingParams, load_backend
from habitat_eqarm.rewards.backends.chat_format import to_openai_messages
from habitat_eqarm.rewards.backends.openai_compat import (
    EndpointError,
    OpenAIBackend,
    is_retryable,
    redact_url,
)
from habitat_eqarm.rewards.model import EQARewardModel

KEY_ENV = "EQARM_TEST_OPENAI_KEY"


@pytest.fixture(scope="module")
def episode():
    memory, questions = make_synthetic_episode(seed=3)
    for q in questions:
        q.predicted_answer, q.reasoning_steps = "a lamp", ["I looked around.", "I saw a lamp."]
    return memory, questions


@pytest.fixture
def client(eqarm_server, tmp_path, monkeypatch):
    """Backends pointed at the server, the key in the environment, a fresh cache per test."""
    monkeypatch.setenv(KEY_ENV, eqarm_server.token)
    model = eqarm_server.get("models")["data"][0]["id"]
    made = []

    def make(**kwargs) -> OpenAIBackend:
        options = {
            "base_url": eqarm_server.base_url,
            "api_key_env": KEY_ENV,
            "cache_dir": tmp_path / "cache",
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            **kwargs,
        }
        made.append(load_backend("openai", model, **options))
        return made[-1]

    yield make
    for backend in made:
        backend.close()
    eqarm_server.set_faults("")


def chat_requests(eqarm_server) -> int:
    return eqarm_server.stats()["http"]["requests"].get("/v1/chat/completions", 0)


def score(backend, episode, n=3, k=2, **kwargs):
    memory, questions = episode
    rm = EQARewardModel(backend)
    return rm.score(questions[:n], memories=[memory] * n, k=k, max_new_tokens=6, **kwargs)


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_scores_parse_and_a_rerun_costs_no_request(eqarm_server, client, episode):
    before = chat_requests(eqarm_server)
    judgements = score(client(), episode, seed=0)
    assert chat_requests(eqarm_server) - before == 3  # one call with n=2 per instance
    for j in judgements:
        assert len(j.samples) == 2 and j.prompt_id == "eqarm-rm-v1"
        assert j.n_valid == sum(s.format_ok for s in j.samples)

    fresh = client()  # a new process would see the same cache on disk
    again = score(fresh, episode, seed=0)
    assert [j.samples for j in again] == [j.samples for j in judgements]
    assert chat_requests(eqarm_server) - before == 3 and fresh.stats["http_requests"] == 0
    assert fresh.stats["cache_hits"] == 6

    more = score(fresh, episode, k=3, seed=0)  # only the third sample of each is new
    assert [j.samples[:2] for j in more] == [j.samples for j in judgements]
    assert fresh.stats["http_requests"] == 3 and chat_requests(eqarm_server) - before == 6


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_text_only_requests_and_the_prompt_id_in_the_cache_key(eqarm_server, client, episode):
    """A request without frames (LLM-match marks) is sent as text and answered; the same
    inputs under another prompt id are another sample, not a cache hit."""
    question = "Is 'a lamp' the same answer as 'a floor lamp'? Reply with a mark from 1 to 5."
    content = [{"type": "text", "text": question}]
    text_only = GenerationRequest(
        [{"role": "user", "content": content}], np.zeros((0, 1, 1, 3), np.uint8), prompt_id="a"
    )
    assert to_openai_messages(text_only) == [{"role": "user", "content": content}]
    backend = client()
    params = SamplingParams(k=2, temperature=0.7, max_new_tokens=4, seed=3)
    before = chat_requests(eqarm_server)
    (result,) = backend.generate([text_only], params)
    assert len(result.texts) == 2 and chat_requests(eqarm_server) - before == 1
    other = dataclasses.replace(text_only, prompt_id="b")
    memory, questions = episode
    with_frames, _ = EQARewardModel(backend).request_for(questions[0], memory)
    again, _, _ = backend.generate([text_only, other, with_frames], params)
    assert again.texts == result.texts and backend.stats["cache_hits"] == 2
    assert chat_requests(eqarm_server) - before == 3  # "b" and the request with frames


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_a_corrupt_cache_entry_is_ignored_and_replaced(eqarm_server, client, episode, caplog):
    backend = client()
    score(backend, episode, n=1, k=1, seed=1)
    (entry,) = (backend.cache.root).rglob("*.json")
    entry.write_text('{"key": {"model": "x"}, "te')  # torn
    before = chat_requests(eqarm_server)
    with caplog.at_level(logging.WARNING):
        score(backend, episode, n=1, k=1, seed=1)
    assert chat_requests(eqarm_server) - before == 1
    assert "ignoring unreadable cache entry" in caplog.text
    score(backend, episode, n=1, k=1, seed=1)
    assert chat_requests(eqarm_server) - before == 1  # the entry was rewritten whole


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_k_mode_repeat_makes_one_call_per_sample(eqarm_server, client, episode):
    before = chat_requests(eqarm_server)
    (j,) = score(client(k_mode="repeat", cache=False), episode, n=1, k=3, seed=4)
    assert len(j.samples) == 3 and chat_requests(eqarm_server) - before == 3


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_injected_429_and_500_are_retried(eqarm_server, client, episode):
    backend = client()
    eqarm_server.set_faults("429:2,500:1")
    before = eqarm_server.stats()
    (j,) = score(backend, episode, n=1, k=2, seed=7)
    after = eqarm_server.stats()
    assert len(j.samples) == 2 and backend.stats["retries"] == 3
    assert after["faults"]["injected"] == 3 and after["faults"]["pending"] == []
    responses = {
        k: v - before["http"]["responses"].get(k, 0) for k, v in after["http"]["responses"].items()
    }
    assert responses["/v1/chat/completions 429"] == 2
    assert responses["/v1/chat/completions 500"] == 1
    assert responses["/v1/chat/completions 200"] == 1


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_retries_run_out_with_a_clear_error(eqarm_server, client, episode):
    backend = client(max_retries=2)
    eqarm_server.set_faults("503:10")
    before = chat_requests(eqarm_server)
    with pytest.raises(EndpointError) as err:
        score(backend, episode, n=1, k=1, seed=8)
    message = str(err.value)
    assert message.startswith(f"{eqarm_server.base_url}/chat/completions: giving up after 3")
    assert "last: HTTP 503 (injected fault 503)" in message and err.value.status == 503
    assert chat_requests(eqarm_server) - before == 3


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_a_refused_key_fails_at_once(eqarm_server, client, episode, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key")
    backend = client()
    with pytest.raises(EndpointError, match="HTTP 401 \\(missing or wrong bearer token\\)"):
        score(backend, episode, n=1, k=1)
    assert backend.stats["http_requests"] == 1 and backend.stats["retries"] == 0


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_connection_errors_are_retried_then_reported(client, episode):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, cache=False)
    with pytest.raises(EndpointError, match="giving up after 3 attempts; last: connection error"):
        score(backend, episode, n=1, k=1)
    assert backend.stats["http_requests"] == 3


@pytest.mark.slow  # the session's server subprocess takes ~10 s to start
def test_the_key_never_appears_in_logs_files_or_errors(
    eqarm_server, client, episode, caplog, tmp_path
):
    key = eqarm_server.token
    seen = []
    with caplog.at_level(logging.DEBUG):  # httpx and httpcore log every request at DEBUG
        backend = client(max_retries=1)
        seen.append(repr(backend))
        eqarm_server.set_faults("429:1")
        score(backend, episode, n=2, k=2, seed=9)
        eqarm_server.set_faults("500:5")
        with pytest.raises(EndpointError) as err:
            score(backend, episode, n=1, k=1, seed=10)
        seen += [str(err.value), repr(err.value)]
    assert "retry 1/1" in caplog.text  # the retries were logged
    assert "HTTP Request: POST" in caplog.text  # and httpx's own request log was captured
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 4  # cache entries
    texts = [caplog.text, eqarm_server.log(), *seen, *(p.read_text() for p in files)]
    assert all(key not in text for text in texts)
    assert key[-12:] not in eqarm_server.log()


# -- parts, without a server ---------------------------------------------------------------------


def test_retryable_statuses():
    assert [s for s in (200, 400, 401, 404, 408, 429, 500, 502, 503) if is_retryable(s)] == [
        408,
        429,
        500,
        502,
        503,
    ]


def test_urls_lose_credentials_before_they_are_shown():
    assert redact_url("https://user:pw@api.example.com:8443/v1?api-key=abc#x") == (
        "https://api.example.com:8443/v1"
    )


def test_backoff_grows_exponentially_with_jitter_and_a_cap(tmp_path):
    backend = OpenAIBackend("m", cache=False, backoff_base=1.0, backoff_max=6.0)
    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (3, 6), (3, 6)], start=1):
        delays = [backend.backoff_delay(attempt) for _ in range(50)]
        assert lo <= min(delays) and max(delays) <= hi and len(set(delays)) > 40
    assert backend.backoff_delay(1, retry_after=4.0) == 4.0  # the server's Retry-After wins
    assert backend.backoff_delay(1, retry_after=60.0) == 6.0  # but stays capped


def test_the_cache_key_covers_what_changes_a_sample(tmp_path):
    backend = OpenAIBackend("m", cache=False)
    request = GenerationRequest([], np.zeros((0, 1, 1, 3), np.uint8), prompt_id="p")
    base = SamplingParams(k=2, temperature=0.8, seed=1)
    key = backend.cache_key(request, "digest", base, 0)
    for changed in (
        backend.cache_key(request, "other digest", base, 0),
        backend.cache_key(request, "digest", base, 1),
        backend.cache_key(request, "digest", SamplingParams(k=2, temperature=0.7, seed=1), 0),
        backend.cache_key(request, "digest", SamplingParams(k=2, temperature=0.8, seed=2), 0),
        backend.cache_key(GenerationRequest([], request.frames, prompt_id="q"), "digest", base, 0),
    ):
        assert changed != key
    assert (
        backend.cache_key(request, "digest", SamplingParams(k=5, temperature=0.8, seed=1), 0) == key
    )
    greedy = SamplingParams(k=3, temperature=0.0)
    assert backend.cache_key(request, "d", greedy, 0) == backend.cache_key(request, "d", greedy, 2)


def test_bad_options_fail_when_the_backend_is_built():
    with pytest.raises(ValueError, match="k_mode"):
        OpenAIBackend("m", k_mode="sometimes", cache=False)
    with pytest.raises(ValueError, match="image_format"):
        OpenAIBackend("m", image_format="gif", cache=False)
