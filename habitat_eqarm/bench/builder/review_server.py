"""The review web page's server: the standard library's HTTP server, loopback by default.

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
import threading
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from habitat_eqarm.bench.builder.common import MemoryCache, error_text
from habitat_eqarm.bench.builder.review import ReviewError, ReviewSession

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
        self.memories = MemoryCache()
        self._jpegs: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def jpeg(self, item: int, k: int) -> bytes:
        """Keyframe ``k`` of item ``item`` as JPEG bytes (ValueError/OSError when unreadable)."""
        with self._lock:
            if (item, k) in self._jpegs:
                self._jpegs.move_to_end((item, k))
                return self._jpegs[(item, k)]
            data = self._render(item, k)
            self._jpegs[(item, k)] = data
            while len(self._jpegs) > self.keep:
                self._jpegs.popitem(last=False)
            return data

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


class ReviewServer(ThreadingHTTPServer):
    """Serves one :class:`ReviewSession`; ``port=0`` picks a free port (see :attr:`url`)."""

    daemon_threads = True

    def __init__(
        self, session: ReviewSession, host: str = "127.0.0.1", port: int = 0, frame_width: int = 480
    ) -> None:
        self.session = session
        self.token = secrets.token_urlsafe(16)
        self.frames = FrameStore(session, frame_width)
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The page's address."""
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def start(self) -> ReviewServer:
        """Serve in a background thread (tests, notebooks); :meth:`close` stops it."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the session."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        self.session.close()


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the page polls nothing; per-request lines would only bury the URL

    # -- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        path = urlsplit(self.path).path
        if path == "/":
            self._send(HTTPStatus.OK, page_html(self.server.token).encode(), "text/html")
        elif path == "/api/state":
            with self.server.lock:
                self._json(HTTPStatus.OK, self.server.session.state())
        elif path.startswith("/frame/"):
            self._frame(path)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        if self.headers.get("X-Review-Token") != self.server.token:
            self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong review token"})
            return
        path = urlsplit(self.path).path
        try:
            body = self._body()
            with self.server.lock:
                session = self.server.session
                if path == "/api/decide":
                    event = session.decide(body.get("id"), body.get("action"), body.get("score"))
                    reply = {"event": event, "progress": session.progress()}
                elif path == "/api/undo":
                    reply = {"undone": session.undo(), "progress": session.progress()}
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no action {path}"})
                    return
        except ReviewError as err:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            return
        self._json(HTTPStatus.OK, reply)

    # -- helpers ------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        bound = str(self.server.server_address[0])
        host = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        if bound in LOOPBACK and host not in LOOPBACK:
            self._json(HTTPStatus.FORBIDDEN, {"error": f"host {host!r} is not served here"})
            return False
        return True

    def _frame(self, path: str) -> None:
        parts = path.removeprefix("/frame/").removesuffix(".jpg").split("/")
        try:
            item, k = (int(p) for p in parts)
            if not 0 <= item < len(self.server.session.items):
                raise ValueError(f"no item {item}")
            data = self.server.frames.jpeg(item, k)
        except (ValueError, OSError) as err:
            self._json(HTTPStatus.NOT_FOUND, {"error": error_text(err)})
            return
        self._send(HTTPStatus.OK, data, "image/jpeg", cache=True)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as err:
            raise ReviewError(f"request body is not JSON ({err.msg})") from None
        if not isinstance(body, dict):
            raise ReviewError("request body must be a JSON object")
        return body

    def _json(self, status: HTTPStatus, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, kind: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header(
            "Content-Type", kind if kind.startswith("image/") else f"{kind}; charset=utf-8"
        )
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(data)
