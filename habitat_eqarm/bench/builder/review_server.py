"""The review web page's server: FastAPI on uvicorn (the ``api`` extra, as ``eqarm serve``),
loopback by default.

Routes: ``GET /`` the page, ``GET /api/state`` items, decisions and progress,
``GET /frame/<item>/<k>.jpg`` keyframe k of an item, ``POST /api/decide`` (``{"id", "action",
"score"}``) and ``POST /api/undo``. A POST must carry the session's token in the
``X-Review-Token`` header (the page has it; another site's page cannot send it), and requests
naming another host than the one served are refused (DNS rebinding).
"""

from __future__ import annotations

import io
import json
import secrets
import socket
import threading
import time
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from habitat_eqarm.bench.builder.common import error_text
from habitat_eqarm.bench.builder.review import ReviewError, ReviewSession
from habitat_eqarm.data.episode_cache import EpisodeCache, RecentlyUsed

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def page_html(token: str) -> str:
    """The review page with the session token filled in."""
    text = resources.files("habitat_eqarm.bench.builder").joinpath("review.html").read_text("utf-8")
    return text.replace("__REVIEW_TOKEN__", token)


class FrameStore:
    """JPEG keyframes of the session's items, made on demand and the recent ones kept."""

    def __init__(self, session: ReviewSession, width: int, keep: int = 256) -> None:
        self.session = session
        self.width = width
        self.keep = keep
        self.memories = EpisodeCache()
        self._jpegs: RecentlyUsed[tuple[int, int], bytes] = RecentlyUsed(keep)
        self._lock = threading.Lock()  # one page request at a time reads the episode readers

    def jpeg(self, item: int, k: int) -> bytes:
        """Keyframe ``k`` of item ``item`` as JPEG bytes (ValueError/OSError when unreadable)."""
        with self._lock:
            return self._jpegs.get((item, k), lambda: self._render(item, k))

    def _render(self, item: int, k: int) -> bytes:
        from PIL import Image

        inst = self.session.items[item]
        if not inst.episode_path:
            raise ValueError(f"{inst.question_id}: no episode_path")
        memory = self.memories.get(inst.episode_path)
        indices = inst.keyframe_indices or memory.keyframes(5)
        if not 0 <= k < len(indices):
            raise ValueError(f"{inst.question_id}: no keyframe {k}")
        image = Image.fromarray(memory.frame(indices[k]))
        height = max(1, round(image.height * self.width / image.width))
        buffer = io.BytesIO()
        image.resize((self.width, height)).save(buffer, "JPEG", quality=85)
        return buffer.getvalue()


class ReviewServer:
    """Serves one :class:`ReviewSession`; ``port=0`` picks a free port (see :attr:`url`).

    :meth:`serve_forever` serves in this thread until Ctrl+C (uvicorn shuts down, then the
    KeyboardInterrupt reaches the caller); :meth:`start` serves in a background thread.
    """

    def __init__(
        self, session: ReviewSession, host: str = "127.0.0.1", port: int = 0, frame_width: int = 480
    ) -> None:
        self.session = session
        self.token = secrets.token_urlsafe(16)
        self.frames = FrameStore(session, frame_width)
        self.lock = threading.Lock()
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family)
        self.server_address = self.socket.getsockname()
        config = uvicorn.Config(
            review_app(self), log_level="warning", access_log=False, timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address."""
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.server.run(sockets=[self.socket])

    def start(self, timeout: float = 30.0) -> ReviewServer:
        """Serve in a background thread (tests, notebooks); :meth:`close` stops it."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise TimeoutError(f"the review server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def close(self) -> None:
        """Stop serving and release the session."""
        if self._thread is not None:
            self.server.should_exit = True
            self._thread.join()
            self._thread = None
        self.socket.close()
        self.session.close()


def review_app(server: ReviewServer) -> FastAPI:
    """The FastAPI app of ``server``'s page, state, frames and actions (see module doc)."""

    def json_reply(status: int, data: Any) -> JSONResponse:
        return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})

    async def host_ok(request: Request) -> None:
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        if server.host in LOOPBACK and host not in LOOPBACK:
            raise HTTPException(403, f"host {host!r} is not served here")

    async def token_ok(request: Request) -> None:
        if request.headers.get("x-review-token") != server.token:
            raise HTTPException(403, "missing or wrong review token")

    app = FastAPI(dependencies=[Depends(host_ok)], docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return json_reply(exc.status_code, {"error": str(exc.detail)})

    @app.get("/")
    def page() -> HTMLResponse:
        return HTMLResponse(page_html(server.token), headers={"Cache-Control": "no-store"})

    @app.get("/api/state")
    def state() -> JSONResponse:
        with server.lock:
            return json_reply(200, server.session.state())

    @app.get("/frame/{item}/{name}")
    def frame(item: str, name: str) -> Response:
        try:
            index, k = int(item), int(name.removesuffix(".jpg"))
            if not 0 <= index < len(server.session.items):
                raise ValueError(f"no item {index}")
            data = server.frames.jpeg(index, k)
        except (ValueError, OSError) as err:
            return json_reply(404, {"error": error_text(err)})
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def act(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        with server.lock:
            session = server.session
            if path == "/api/decide":
                event = session.decide(body.get("id"), body.get("action"), body.get("score"))
                return {"event": event, "progress": session.progress()}
            if path == "/api/undo":
                return {"undone": session.undo(), "progress": session.progress()}
        return None

    @app.post("/{path:path}", dependencies=[Depends(token_ok)])
    async def action(request: Request) -> JSONResponse:
        path = request.url.path
        try:
            reply = await run_in_threadpool(act, path, _json_object(await request.body()))
        except ReviewError as err:
            return json_reply(400, {"error": str(err)})
        if reply is None:
            return json_reply(404, {"error": f"no action {path}"})
        return json_reply(200, reply)

    @app.get("/{path:path}")
    def no_page(request: Request) -> JSONResponse:
        return json_reply(404, {"error": f"no page {request.url.path}"})

    return app


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except json.JSONDecodeError as err:
        raise ReviewError(f"request body is not JSON ({err.msg})") from None
    if not isinstance(body, dict):
        raise ReviewError("request body must be a JSON object")
    return body
