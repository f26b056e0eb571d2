"""The FastAPI app of ``eqarm serve``: one reward model behind an OpenAI-compatible API.

Endpoints (all but ``/health`` need the bearer token when the server has one):

- ``POST /v1/chat/completions``: OpenAI chat completions with data-URL images; ``n``,
  ``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``min_tokens``. No streaming.
- ``POST /v1/score``: EQA instances in, :class:`Judgement` dicts (with their K-vote spread)
  out; ``POST /v1/openrlhf``: OpenRLHF's remote reward-model format (both in
  :mod:`habitat_eqarm.serve.scoring`).
- ``GET /health``, ``GET /v1/models``, ``GET /v1/stats`` (HTTP counts by route and status,
  batch sizes, faults injected); ``POST /admin/faults`` when fault injection is enabled.

The work endpoints go through one :class:`DynamicBatcher` per backend replica
(``--replicas N``: requests are dealt to the replicas in turn). Errors have OpenAI's shape,
``{"error": {"message", "type", "code"}}``, and never echo the request body (it holds images).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from habitat_eqarm.data.episode_ref import EpisodeStore
from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    GenerationResult,
    SamplingParams,
)
from habitat_eqarm.rewards.backends.chat_format import decode_image_url, from_openai_messages
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.serve.batcher import BatcherClosed, DynamicBatcher
from habitat_eqarm.serve.faults import FaultPlan
from habitat_eqarm.serve.memo import ScoreMemo
from habitat_eqarm.serve.schemas import (
    ChatCompletionRequest,
    FaultsRequest,
    OpenRLHFRequest,
    ScoreRequest,
)
from habitat_eqarm.serve.scoring import score_instances, score_openrlhf

logger = logging.getLogger(__name__)

WORK_ROUTES = ("/v1/chat/completions", "/v1/score", "/v1/openrlhf")
KNOWN_ROUTES = (*WORK_ROUTES, "/health", "/v1/models", "/v1/stats", "/admin/faults")


@dataclass
class ServerSettings:
    """How the server behaves; ``eqarm serve``'s options map onto these."""

    served_model_name: str
    token: str | None = None
    max_batch: int = 8
    max_wait_ms: float = 10.0
    faults: str = ""
    fault_endpoint: bool = False
    data_roots: list[str] = field(default_factory=list)
    max_body_mb: float = 64.0
    max_images: int = 64
    max_image_pixels: int = 4096 * 4096
    max_new_tokens: int = 4096
    default_max_tokens: int = 512
    max_n: int = 64
    max_instances: int = 64
    close_model: bool = True
    episode_store: str | None = None
    memo_size: int = 4096


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port`` 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: small JSON answers leave at once instead of waiting
    # for the client's delayed ACK (Nagle), which cost ~40 ms per keep-alive request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections queue until the app is up, instead of being refused
    return sock


class HttpCounters:
    """Requests by route and responses by status (other paths count as ``other``)."""

    def __init__(self) -> None:
        self.routes: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, path: str, status: int) -> None:
        """Count one answered request."""
        route = path if path in KNOWN_ROUTES else "other"
        with self._lock:
            self.routes[route] += 1
            self.statuses[f"{route} {status}"] += 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        with self._lock:
            return {"requests": dict(self.routes), "responses": dict(self.statuses)}


class GuardMiddleware:
    """Pure ASGI: refuse POST bodies without a length or over the limit; count responses."""

    def __init__(self, app: Any, *, max_body: int, counters: HttpCounters) -> None:
        self.app, self.max_body, self.counters = app, max_body, counters

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            self.counters.record(path, refusal.status_code)
            return

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                self.counters.record(path, message["status"])
            await send(message)

        await self.app(scope, receive, counting_send)

    def _refusal(self, scope: dict) -> JSONResponse | None:
        if scope["method"] != "POST":
            return None
        length = dict(scope["headers"]).get(b"content-length")
        if length is None:
            return error_response(411, "a POST body needs a Content-Length header")
        if not length.isdigit() or int(length) > self.max_body:
            return error_response(413, f"request body over the limit of {self.max_body} bytes")
        return None


def error_response(status: int, message: str, headers: dict[str, str] | None = None):
    """An OpenAI-shaped error response."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


class ServerState:
    """What the routes share: the models and their batchers, the memo, the fault plan, the
    counters. ``models`` are replicas of one reward model (same prompt and keyframe choice)."""

    def __init__(self, models: Sequence[EQARewardModel], settings: ServerSettings) -> None:
        if not models:
            raise ValueError("a server needs at least one model")
        self.models = list(models)
        self.model = self.models[0]
        self.settings = settings
        wait_ms = settings.max_wait_ms
        self.batchers = [
            DynamicBatcher(m.backend, max_batch=settings.max_batch, max_wait_ms=wait_ms)
            for m in self.models
        ]
        self._turn = itertools.count()
        self.faults = FaultPlan.parse(settings.faults)
        self.http = HttpCounters()
        self.memo = ScoreMemo(settings.memo_size)
        self.store = EpisodeStore(settings.episode_store) if settings.episode_store else None
        self.data_roots = [Path(root).resolve() for root in settings.data_roots]
        self.started = time.time()

    @property
    def closing(self) -> bool:
        """True once the server began shutting down."""
        return any(b.closing for b in self.batchers)

    @property
    def queued(self) -> int:
        """Requests waiting for a batch, over all replicas."""
        return sum(b.queued for b in self.batchers)

    def batching_stats(self) -> dict[str, Any]:
        """Batch counters summed over the replicas, and each replica's own."""
        per_replica = [b.stats.to_dict() for b in self.batchers]
        total: dict[str, Any] = {}
        for key in ("running", "batches", "calls", "requests", "failed_requests", "generate_s"):
            total[key] = sum(r[key] for r in per_replica)
        sizes: Counter[str] = Counter()
        for r in per_replica:
            sizes.update(r["sizes"])
        total["sizes"] = dict(sorted(sizes.items(), key=lambda kv: int(kv[0])))
        total["max_size"] = max(r["max_size"] for r in per_replica)
        total["mean_size"] = total["requests"] / total["calls"] if total["calls"] else 0.0
        return {**total, "replicas": per_replica}

    async def generate(self, request: GenerationRequest, params: SamplingParams):
        """One request through the batcher; server-side failures become HTTP errors."""
        batcher = self.batchers[next(self._turn) % len(self.batchers)]
        try:
            return await batcher.submit(request, params)
        except BatcherClosed as err:
            raise HTTPException(503, str(err)) from None
        except Exception as err:
            logger.exception("generation failed")
            raise HTTPException(500, f"generation failed: {type(err).__name__}: {err}") from None

    def episode_path(self, path: str, where: str) -> Path:
        """``path`` resolved, if it lies under a data root (else HTTP 403)."""
        if not self.data_roots:
            raise HTTPException(
                400,
                f"{where}: no frames given, and this server reads no episode paths "
                "(start it with --data_root DIR, or --episode_store DIR for episode ids)",
            )
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(root) for root in self.data_roots):
            raise HTTPException(403, f"{where}: episode_path is outside the server's data roots")
        return resolved


def create_app(
    model: EQARewardModel | Sequence[EQARewardModel], settings: ServerSettings
) -> FastAPI:
    """The app serving ``model`` (or replicas of one model); the batchers start and stop with
    the app's lifespan."""
    models = [model] if isinstance(model, EQARewardModel) else list(model)
    state = ServerState(models, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for batcher in state.batchers:
            batcher.start()
        yield
        # in-flight and queued requests finish first
        await asyncio.gather(*(batcher.stop() for batcher in state.batchers))
        if settings.close_model:
            for m in models:
                m.close()

    app = FastAPI(
        title="eqarm serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.eqarm = state
    max_body = int(settings.max_body_mb * 1024 * 1024)
    app.add_middleware(GuardMiddleware, max_body=max_body, counters=state.http)
    _add_error_handlers(app)
    _add_routes(app, state)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()[:5]
        ]
        return error_response(400, "invalid request: " + "; ".join(problems))


def _auth_dependency(token: str | None):
    expected = token.encode("utf-8") if token else None

    async def require_token(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), expected
        ):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return require_token


def _add_routes(app: FastAPI, state: ServerState) -> None:
    settings = state.settings
    auth = Depends(_auth_dependency(settings.token))

    async def inject_fault() -> None:
        status = state.faults.next_status()
        if status is not None:
            raise HTTPException(status, f"injected fault {status}")

    work = [auth, Depends(inject_fault)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        status = "shutting_down" if state.closing else "ok"
        return {
            "status": status,
            "model": settings.served_model_name,
            "queued": state.queued,
            "replicas": len(state.batchers),
        }

    @app.get("/v1/models", dependencies=[auth])
    async def models() -> dict[str, Any]:
        card = {"id": settings.served_model_name, "object": "model", "owned_by": "habitat-eqarm"}
        return {"object": "list", "data": [{**card, "created": int(state.started)}]}

    @app.get("/v1/stats", dependencies=[auth])
    async def stats() -> dict[str, Any]:
        return {
            "http": state.http.to_dict(),
            "batching": {
                **state.batching_stats(),
                "max_batch": settings.max_batch,
                "max_wait_ms": settings.max_wait_ms,
                "queued": state.queued,
            },
            "memo": state.memo.to_dict(),
            "faults": state.faults.to_dict(),
            "uptime_s": time.time() - state.started,
        }

    @app.post("/v1/chat/completions", dependencies=work)
    async def chat_completions(body: ChatCompletionRequest) -> dict[str, Any]:
        request, params = await run_in_threadpool(chat_inputs, body, settings)
        result = await state.generate(request, params)
        return chat_response(result, settings.served_model_name)

    @app.post("/v1/score", dependencies=work)
    async def score(body: ScoreRequest) -> dict[str, Any]:
        return await score_instances(state, body)

    @app.post("/v1/openrlhf", dependencies=work)
    async def openrlhf(body: OpenRLHFRequest) -> dict[str, Any]:
        return await score_openrlhf(state, body)

    if settings.fault_endpoint or settings.faults:

        @app.post("/admin/faults", dependencies=[auth])
        async def set_faults(body: FaultsRequest) -> dict[str, Any]:
            try:
                state.faults = FaultPlan.parse(body.spec, body.seed)
            except ValueError as err:
                raise HTTPException(400, str(err)) from None
            return state.faults.to_dict()


# -- /v1/chat/completions -----------------------------------------------------------------------


def chat_inputs(
    body: ChatCompletionRequest, settings: ServerSettings
) -> tuple[GenerationRequest, SamplingParams]:
    """The backend request and sampling parameters of a chat body (HTTP 4xx when invalid)."""
    if body.model and body.model != settings.served_model_name:
        raise HTTPException(
            404, f"model {body.model!r} is not served here (serving {settings.served_model_name!r})"
        )
    if body.stream:
        raise HTTPException(400, "stream=true is not supported")
    if body.n > settings.max_n:
        raise HTTPException(400, f"n={body.n} is over this server's limit of {settings.max_n}")
    max_tokens = body.max_completion_tokens or body.max_tokens or settings.default_max_tokens
    if max_tokens > settings.max_new_tokens:
        raise HTTPException(
            400, f"max_tokens={max_tokens} is over the limit {settings.max_new_tokens}"
        )
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    n_images = sum(
        part.get("type") == "image_url"
        for m in messages
        if isinstance(m["content"], list)
        for part in m["content"]
    )
    if n_images > settings.max_images:
        raise HTTPException(400, f"{n_images} images is over the limit of {settings.max_images}")
    try:
        request = from_openai_messages(
            messages, lambda url: decode_image_url(url, settings.max_image_pixels)
        )
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    params = SamplingParams(
        k=body.n,
        temperature=body.temperature,
        top_p=body.top_p,
        max_new_tokens=max_tokens,
        seed=body.seed,
        min_new_tokens=min(body.min_tokens, max_tokens),
    )
    return request, params


def chat_response(result: GenerationResult, model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object; ``eqarm_timings`` adds where the time went."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "logprobs": None,
        }
        for i, text in enumerate(result.texts)
    ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": None,
        "eqarm_timings": result.timings,
    }
