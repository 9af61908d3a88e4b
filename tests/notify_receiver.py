"""A real local HTTP receiver for notification tests: records every POST; the path picks its answer
(``/ok…`` 200, ``/fail…`` 500, ``/hang…`` no answer for 30 s)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.requests.append({"path": self.path, "body": json.loads(body or b"null"),
                                              "headers": dict(self.headers), "at": time.monotonic()})
                    receiver._cond.notify_all()
                if self.path.startswith("/hang"):
                    receiver._stop.wait(30)
                    return
                code = 500 if self.path.startswith("/fail") else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[Any]:
        with self._cond:
            return [r["body"] for r in self.requests if r["path"] == path]

    def wait_for(self, path: str, n: int, timeout: float = 20.0) -> list[Any]:
        """The first ``n`` bodies posted to ``path``, waiting up to ``timeout`` seconds for them."""
        end = time.monotonic() + timeout
        with self._cond:
            while len([r for r in self.requests if r["path"] == path]) < n:
                left = end - time.monotonic()
                if left <= 0:
                    got = [r["body"].get("event") if isinstance(r["body"], dict) else r["body"]
                           for r in self.requests if r["path"] == path]
                    raise AssertionError(f"{path}: {len(got)} request(s) after {timeout} s, wanted {n}: {got}")
                self._cond.wait(left)
            return [r["body"] for r in self.requests if r["path"] == path][:n]

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
