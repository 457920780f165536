"""Django's HTTP under uvicorn through its WSGI handler: one thread hop per request instead of several.

Django's ASGI handler runs sync views and sync-only middleware by hopping between the event loop
and threads: with this project's middleware (WhiteNoise and Django's CSRF ``process_view`` are
sync only) a request crossed threads three or more times, and a plain view cost about 7 ms of CPU
(142 requests/s for ``/healthz`` on one process). Here each request is read on the event loop,
handed whole to ``WSGIHandler`` in a bounded thread pool, and its response sent back from the
loop: one hop. The middleware, sessions, CSRF and views are Django's own, unchanged. Websockets and
the queue's lean path (``waitingroom.fastpath``) stay on the event loop.

The pool bounds how many requests run Django code at once (``WEB_THREADS`` per process); requests
beyond it wait on the loop. Bodies are read whole, up to ``DATA_UPLOAD_MAX_MEMORY_SIZE`` plus a
margin; a larger body is refused with 413 before Django sees it, and a request whose client leaves
before its body arrived whole is not run at all (as Django's ASGI handler does). Responses are sent
whole too (the API's answers and the static files are small).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

BODY_MARGIN = 64 * 1024  # multipart boundaries and headers on top of Django's own limit


class WsgiBridge:
    """ASGI application (HTTP only) serving a WSGI application from a thread pool of its own."""

    def __init__(self, wsgi_application, *, threads: int) -> None:
        self.wsgi_application = wsgi_application
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="django")

    async def __call__(self, scope, receive, send) -> None:
        try:
            body = await _read_body(receive, limit=_body_limit())
        except ClientGone:
            return  # as Django's ASGI handler: a request whose body never arrived whole is not run
        if body is None:  # the API's error shape (flashsale.api), whatever the path
            content = json.dumps({"error": {"code": "request_too_large", "message": "The request body is too large."}})
            await send(
                {"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": content.encode()})
            return
        loop = asyncio.get_running_loop()
        status, headers, content = await loop.run_in_executor(self.executor, self._run, environ_build(scope, body))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _run(self, environ: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started: list = []

        def start_response(status: str, response_headers, exc_info=None):
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, response_headers]

        result = self.wsgi_application(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # Django's request_finished: database connections go back to the pool
        status, response_headers = started
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response_headers]
        return int(status.split(" ", 1)[0]), headers, content


def _body_limit() -> int | None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return None if limit is None else limit + BODY_MARGIN


class ClientGone(Exception):
    """The client disconnected before the whole request body arrived."""


async def _read_body(receive, *, limit: int | None) -> bytes | None:
    """The whole request body, or None when it is larger than ``limit``; ClientGone if the client left."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: a cut-off body must not reach a view
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def environ_build(scope, body: bytes) -> dict:
    """The WSGI environ of an ASGI HTTP scope (PEP 3333; headers joined with commas, cookies with "; ")."""
    script_name = scope.get("root_path", "").encode("utf8").decode("latin1")
    path_info = scope["path"].encode("utf8").decode("latin1")
    if script_name and path_info.startswith(script_name):
        path_info = path_info[len(script_name) :]
    server = scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1] if server[1] is not None else 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": (scope.get("client") or ("", 0))[0],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", []):
        if b"_" in raw_name:
            # As Django's own ASGI handler (and nginx, and Apache) do: "X_Forwarded_For" must not pass for
            # X-Forwarded-For once dashes become underscores.
            continue
        name = raw_name.decode("latin1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        value = raw_value.decode("latin1")
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ
