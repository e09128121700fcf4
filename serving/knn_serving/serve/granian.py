"""`knn-serve --http granian`: the app under granian's embedded server (Rust, hyper)
on this process's event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import uvloop
from granian.asgi import LifespanProtocol
from granian.constants import HTTPModes, Interfaces, TaskImpl
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.embed import Server
from starlette.types import ASGIApp

from .app import FAST_ROUTES

FORMAT = "%(asctime)s knn-serve %(levelname)s %(message)s"


def _log_config() -> dict[str, Any]:
    return {
        "formatters": {"generic": {"()": "logging.Formatter", "fmt": FORMAT}},
        "handlers": {
            "console": {
                "formatter": "generic",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {"_granian": {"handlers": ["console"], "propagate": False}},
    }


class RSGIFront:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state.knn

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        handler = FAST_ROUTES.get(scope.path) if scope.method == "POST" else None
        if handler is not None:
            start = time.perf_counter()
            body = await proto()
            status, payload = await handler(
                self.state,
                scope.headers.get("content-type"),
                body,
                scope.query_string.encode(),
                start,
            )
            proto.response_bytes(
                status,
                [("content-type", "application/json"), ("content-length", str(len(payload)))],
                payload,
            )
            return
        body = await proto()
        sent = False
        asgi_scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": scope.http_version,
            "method": scope.method,
            "scheme": scope.scheme,
            "path": scope.path,
            "raw_path": scope.path.encode(),
            "query_string": scope.query_string.encode(),
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in scope.headers.items()],
            "client": None,
            "server": None,
        }

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k.decode(), v.decode()) for k, v in message.get("headers", [])]
            else:
                chunks.append(message.get("body", b""))

        await self.app(asgi_scope, receive, send)
        proto.response_bytes(status, headers, b"".join(chunks))


def serve(app: ASGIApp, host: str, port: int, drain_seconds: int, log_level: str) -> None:
    rsgi = os.environ.get("KNN_GRANIAN_IFACE") == "rsgi"
    task = TaskImpl.rust if os.environ.get("KNN_GRANIAN_TASK") == "rust" else TaskImpl.asyncio

    async def main() -> None:
        server = Server(
            RSGIFront(app) if rsgi else app,
            address=host,
            port=port,
            interface=Interfaces.RSGI if rsgi else Interfaces.ASGI,
            http=HTTPModes.http1,
            websockets=False,
            task_impl=task,
            http1_settings=HTTP1Settings(),
            log_level=LogLevels(log_level),
            log_dictconfig=_log_config(),
            log_access=False,
        )
        server.workers_kill_timeout = drain_seconds
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stop)
        lifespan = LifespanProtocol(app) if rsgi else None
        if lifespan is not None:
            await lifespan.startup()
        await server.serve()
        if lifespan is not None:
            await lifespan.shutdown()

    uvloop.run(main())
