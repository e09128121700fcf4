"""`knn-serve --http direct`: uvicorn's httptools protocol, answering POST /v1/query
and /v1/assign itself.

uvicorn still owns everything else: the listening socket, lifespan, SIGTERM and the
drain (a direct request is a task in the server's task set, as an ASGI one is),
`--workers`, keep-alive and pipelining, 100-continue, and every other route, which
goes to the ASGI app as before. A request to a fast route skips the ASGI app
(FastAPI's middleware stack, uvicorn's proxy-headers wrapper), the ASGI message
dicts, and uvicorn's generic `send`: its answer is the same bytes as
QueryFastPath's through uvicorn (status line, the `date` header, content-type,
content-length, `connection: close` when the connection ends), written with one
`transport.write` instead of two.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from .app import FAST_ROUTES, Handler, State, fast_answer

# Raw request paths (bytes) of the fast routes; a path with %-escapes goes the ASGI way.
_ROUTES: dict[bytes, Handler] = {path.encode(): h for path, h in FAST_ROUTES.items()}


def _state_of(app: Any) -> State:
    """The knn State of the app uvicorn loaded, under its wrappers (proxy headers)."""
    seen = app
    while seen is not None:
        state = getattr(getattr(seen, "state", None), "knn", None)
        if isinstance(state, State):
            return state
        seen = getattr(seen, "app", None)
    raise RuntimeError("--http direct serves knn-serve's app only")


class DirectCycle(RequestResponseCycle):
    """One request to a fast route: body, 100-continue, disconnects and keep-alive as
    uvicorn's cycle has them; the answer without the ASGI app."""

    state: State
    handler: Handler

    async def run_asgi(self, app: Any) -> None:
        try:
            answer = await fast_answer(
                self.state,
                self.handler,
                self.scope["headers"],
                self.scope["query_string"],
                self.receive,  # type: ignore[arg-type]
            )
            if answer is not None:
                if self.flow.write_paused and not self.disconnected:
                    await self.flow.drain()
                if not self.disconnected:
                    self._write(*answer)
        except BaseException as exc:  # as uvicorn's own cycle: a 500, never a hang
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send_500_response()
            else:
                self.transport.close()
        finally:
            self.on_response = lambda: None

    def _write(self, status: int, payload: bytes) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        content = [STATUS_LINE[status]]
        for name, value in self.default_headers:
            content += [name, b": ", value, b"\r\n"]
        content += [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(payload)).encode(),
            b"\r\n" if self.keep_alive else b"\r\nconnection: close\r\n",
            b"\r\n",
            payload,
        ]
        self.transport.write(b"".join(content))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


class DirectProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.knn_state = _state_of(self.app)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Called for each request once it is its turn (at once, or after the one before
        # it on a pipelined connection), before its task exists.
        if app is self.app and type(cycle) is RequestResponseCycle:
            scope = cycle.scope
            handler = _ROUTES.get(scope["raw_path"]) if scope["method"] == "POST" else None
            if handler is not None and not scope["root_path"]:
                cycle.__class__ = DirectCycle
                direct: DirectCycle = cycle  # type: ignore[assignment]
                direct.state = self.knn_state
                direct.handler = handler
        super()._start_asgi_task(cycle, app)
