"""`eqarm serve`: one reward model over HTTP for many clients (see :mod:`habitat_eqarm.serve`)."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field

from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.rewards.config import KeyframeOptions


@dataclass
class ServeConfig(KeyframeOptions):
    """Options of `eqarm serve`, with ``ScoringConfig``'s keyframe section (requests set the
    sampling and vote sections)."""

    model: str | None = field(default=None, metadata={"help": "path or hub id (default: tiny)"})
    backend: str = field(default="hf", metadata={"help": "backend running the model: hf | vllm"})
    served_model_name: str | None = field(
        default=None, metadata={"help": "the name clients pass as `model` (default: --model)"}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (loopback)"})
    port: int = field(default=8000, metadata={"help": "port (0: any free port)"})
    port_file: str | None = field(
        default=None, metadata={"help": "write {host, port} as JSON here once bound"}
    )
    token: str | None = field(
        default=None, metadata={"help": "require `Authorization: Bearer TOKEN` (prefer token_env)"}
    )
    token_env: str | None = field(
        default=None, metadata={"help": "read the token from this environment variable"}
    )
    max_batch: int = field(
        default=8, metadata={"help": "requests per backend call (1: no batching)"}
    )
    max_wait_ms: float = field(
        default=10.0, metadata={"help": "how long a request may wait for others to batch with"}
    )
    data_root: list[str] = field(
        default_factory=list,
        metadata={"help": "folders whose episodes /v1/score may read by path (default: none)"},
    )
    episode_store: str | None = field(
        default=None,
        metadata={"help": "folder resolving episode references (<eqarm_ref> tags, episode_id)"},
    )
    memo_size: int = field(
        default=4096, metadata={"help": "seeded /v1/score judgements remembered (0: off)"}
    )
    replicas: int = field(
        default=1,
        metadata={
            "help": "hf backend: model copies behind one app, dealt requests in turn "
            "(one per GPU when several are visible)"
        },
    )
    enable_test_faults: bool = field(
        default=False,
        metadata={"help": "tests only: add POST /admin/faults, which makes requests fail"},
    )
    inject_faults: str = field(
        default="",
        metadata={"help": "tests only (needs --enable_test_faults): first faults, '429:2,500:1'"},
    )
    tensor_parallel_size: int = field(
        default=1, metadata={"help": "vllm backend: GPUs one model is split over"}
    )
    backend_kwargs: str | None = field(
        default=None,
        metadata={"help": "more backend options as a JSON object, e.g. '{\"min_new_tokens\": 64}'"},
    )
    device: str | None = None
    dtype: str | None = None
    frames_as: str = "images"
    max_body_mb: float = 64.0
    log_level: str = "info"
    graceful_timeout_s: float = field(
        default=30.0, metadata={"help": "on SIGINT/SIGTERM, wait this long for open requests"}
    )


def make_parser():
    """The `eqarm serve` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(ServeConfig)


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(cfg: ServeConfig) -> str | None:
    """The bearer token from ``--token`` or the variable named by ``--token_env``."""
    if cfg.token_env:
        token = os.environ.get(cfg.token_env)
        if not token:
            raise ValueError(f"--token_env {cfg.token_env}: that environment variable is not set")
        return token
    return cfg.token or None


def check_replicas(cfg: ServeConfig) -> None:
    """``--replicas`` is for backends that run one batch at a time (``hf``)."""
    if cfg.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {cfg.replicas}")
    if cfg.replicas > 1 and cfg.backend == "vllm":
        raise ValueError(
            "--replicas with --backend vllm: vLLM batches continuously on its own; split one "
            "model over GPUs with --tensor_parallel_size, or run one server per GPU group"
        )


def replica_device(device: str | None, replica: int, gpus: int) -> str | None:
    """Where replica ``replica`` runs: with several GPUs visible and ``--device`` unset (or
    plain ``cuda``), replica i on ``cuda:i`` (modulo the GPUs); otherwise ``device``."""
    if gpus > 1 and device in (None, "cuda"):
        return f"cuda:{replica % gpus}"
    return device


def load_reward_model(cfg: ServeConfig, replica: int = 0):
    """The :class:`EQARewardModel` to serve, on the chosen backend (replica ``replica``)."""
    from habitat_eqarm.cli.common import resolve_model
    from habitat_eqarm.rewards.backends.base import backend_kwargs
    from habitat_eqarm.rewards.model import EQARewardModel

    model_name, _ = resolve_model(cfg.model)
    kwargs: dict = {"max_pixels": cfg.max_pixels}
    if cfg.backend == "hf":
        import torch

        device = replica_device(cfg.device, replica, torch.cuda.device_count())
        kwargs.update(device=device, dtype=cfg.dtype, batch_size=cfg.max_batch)
    elif cfg.backend == "vllm":
        kwargs["tensor_parallel_size"] = cfg.tensor_parallel_size
        if cfg.dtype:
            kwargs["dtype"] = cfg.dtype
    kwargs.update(backend_kwargs(cfg.backend_kwargs))
    return EQARewardModel.from_pretrained(
        model_name,
        cfg.backend,
        num_keyframes=cfg.num_keyframes,
        keyframe_method=cfg.keyframe_method,
        frames_as=cfg.frames_as,
        **kwargs,
    )


def main(cfg: ServeConfig) -> int:
    """Load the model, bind, and serve until SIGINT/SIGTERM (then finish open requests)."""
    import uvicorn

    from habitat_eqarm.serve.app import ServerSettings, bind, create_app

    token = resolve_token(cfg)
    if not is_loopback(cfg.host) and not token:
        print(
            f"WARNING: listening on {cfg.host} without a token: anyone who can reach this "
            "address can use the model. Pass --token_env NAME (or --token)."
        )
    check_replicas(cfg)
    if cfg.inject_faults and not cfg.enable_test_faults:
        raise ValueError("--inject_faults is for tests: it needs --enable_test_faults true")
    models = [load_reward_model(cfg, i) for i in range(cfg.replicas)]
    model = models[0]
    settings = ServerSettings(
        served_model_name=cfg.served_model_name or model.name,
        token=token,
        max_batch=cfg.max_batch,
        max_wait_ms=cfg.max_wait_ms,
        test_faults=cfg.enable_test_faults,
        faults=cfg.inject_faults,
        data_roots=list(cfg.data_root),
        max_body_mb=cfg.max_body_mb,
        episode_store=cfg.episode_store,
        memo_size=cfg.memo_size,
    )
    app = create_app(models, settings)
    sock = bind(cfg.host, cfg.port)
    host, port = sock.getsockname()[:2]
    if cfg.port_file:
        atomic_write_text(cfg.port_file, json.dumps({"host": host, "port": port}))
    print(
        f"eqarm serve: {settings.served_model_name!r} on http://{host}:{port}/v1 "
        f"(replicas {cfg.replicas}, max_batch {cfg.max_batch}, max_wait {cfg.max_wait_ms} ms, "
        f"token {'required' if token else 'off'})",
        flush=True,
    )
    config = uvicorn.Config(
        app,
        log_level=cfg.log_level,
        timeout_graceful_shutdown=cfg.graceful_timeout_s,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0
