import pytest

from habitat_eqarm.cli.main import COMMANDS
from habitat_eqarm.cli.serve import (
    ServeConfig,
    check_replicas,
    is_loopback,
    replica_device,
    resolve_token,
)


def test_serve_is_a_registered_verb():
    assert COMMANDS["serve"][0] == "habitat_eqarm.cli.serve"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.2", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_the_token_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "t0k")
    assert resolve_token(ServeConfig(token_env="MY_TOKEN")) == "t0k"
    assert resolve_token(ServeConfig(token="direct")) == "direct"
    assert resolve_token(ServeConfig()) is None
    monkeypatch.delenv("MY_TOKEN")
    with pytest.raises(
        ValueError, match="--token_env MY_TOKEN: that environment variable is not set"
    ):
        resolve_token(ServeConfig(token_env="MY_TOKEN"))


def test_replicas_are_for_one_batch_at_a_time_backends():
    check_replicas(ServeConfig(replicas=2))
    with pytest.raises(ValueError, match="at least 1"):
        check_replicas(ServeConfig(replicas=0))
    with pytest.raises(ValueError, match="--tensor_parallel_size"):
        check_replicas(ServeConfig(replicas=2, backend="vllm"))


def test_replicas_spread_over_the_visible_gpus():
    assert [replica_device(None, i, 4) for i in range(5)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:3",
        "cuda:0",
    ]
    assert replica_device("cuda", 1, 2) == "cuda:1"
    assert replica_device("cuda:3", 1, 8) == "cuda:3"  # an explicit device is kept
    assert replica_device(None, 1, 0) is None and replica_device("cpu", 1, 8) == "cpu"


def test_listening_sockets_send_small_answers_at_once():
    import socket

    from habitat_eqarm.serve.app import bind

    sock = bind("127.0.0.1", 0)
    try:  # accepted connections inherit TCP_NODELAY (no Nagle wait on small JSON answers)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()
