"""The real `knn-serve` on 127.0.0.1 and a free port, for tests, `make bench` and `make demo`.

    with serve(artifact, log_dir) as server:        # listening, and /readyz answered 200
        server.client().post("/v1/query", json={"vector": [...], "k": 10})

The server is a :class:`~knn_devtools.procs.ManagedProcess`: its own process
group, SIGTERM when its owner dies, stdout and stderr in files under
``log_dir``. Failures raise :class:`~knn_devtools.procs.ProcessError` with the
tail of its stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Self

import httpx

from knn_devtools.procs import ManagedProcess, ProcessError, log_files, start_on_free_port

LOOPBACK = "127.0.0.1"
# The data-plane commands installed next to the running interpreter.
BIN = Path(sys.executable).parent
KNN_BUILD = BIN / "knn-build"
KNN_SERVE = BIN / "knn-serve"


def http_status(base_url: str, path: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET base_url + path``, or None if nothing answers."""
    try:
        # trust_env=False: loopback requests never go through a proxy from the environment.
        with httpx.Client(base_url=base_url, timeout=timeout, trust_env=False) as c:
            return c.get(path).status_code
    except httpx.TransportError:
        return None


class KnnServe:
    """The real `knn-serve` on 127.0.0.1 and a free port.

    ``index_name`` and ``namespace`` become ``--index-name`` and ``--namespace``;
    left out, the class defaults apply (None: knn-serve's own). ``args`` are
    further flags; ``env`` is added to this process's environment.
    """

    default_index_name: ClassVar[str | None] = None
    default_namespace: ClassVar[str | None] = None

    def __init__(
        self,
        artifact: Path | str,
        log_dir: Path,
        *,
        index_name: str | None = None,
        namespace: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.artifact = artifact
        self.log_dir = log_dir
        self.index_name = index_name if index_name is not None else self.default_index_name
        self.namespace = namespace if namespace is not None else self.default_namespace
        self.args = list(args)
        self.env = env
        self.port = 0
        self._child: ManagedProcess | None = None

    @property
    def child(self) -> ManagedProcess:
        if self._child is None:
            raise ProcessError("knn-serve was never started")
        return self._child

    @property
    def address(self) -> str:
        """host:port, as a Prometheus target."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        # trust_env=False: loopback requests never go through a proxy from the environment.
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def argv(self) -> list[str]:
        argv = [str(KNN_SERVE), "--artifact", str(self.artifact)]
        argv += ["--host", LOOPBACK, "--port", str(self.port)]
        if self.index_name is not None:
            argv += ["--index-name", self.index_name]
        if self.namespace is not None:
            argv += ["--namespace", self.namespace]
        return argv + self.args

    def start(self, *, ready: bool = True, timeout: float = 60.0) -> None:
        """Start and wait for /readyz 200 (``ready``) or for /healthz 200 (listening only).

        A port taken by someone else between choosing and binding it is retried."""

        def spawn(port: int) -> ManagedProcess:
            self.port = port
            out, err = log_files(self.log_dir, "knn-serve")
            env = {**os.environ, **self.env} if self.env is not None else None
            self._child = ManagedProcess(
                "knn-serve",
                self.argv(),
                out,
                stderr_path=err,
                env=env,
                # The supervisor of --workers N stops its workers on SIGTERM.
                death_signal=signal.SIGTERM,
            )
            return self._child

        start_on_free_port(spawn, lambda _: self.wait_listening(timeout), stop_timeout=15.0)
        if ready:
            self.wait_ready(timeout)

    def wait_listening(self, timeout: float = 60.0) -> None:
        self.child.wait_until("/healthz", lambda: http_status(self.url, "/healthz") == 200, timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.child.wait_until("/readyz", lambda: http_status(self.url, "/readyz") == 200, timeout)

    def metrics_text(self) -> str:
        with self.client() as c:
            r = c.get("/metrics")
            r.raise_for_status()
            return r.text

    def stop(self, timeout: float = 15.0) -> int | None:
        return None if self._child is None else self._child.stop(timeout)

    @classmethod
    @contextlib.contextmanager
    def serve(
        cls,
        artifact: Path | str,
        log_dir: Path,
        *,
        ready: bool = True,
        index_name: str | None = None,
        namespace: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Iterator[Self]:
        """A started `knn-serve` (ready, unless ``ready=False``), stopped on exit."""
        server = cls(
            artifact, log_dir, index_name=index_name, namespace=namespace, args=args, env=env
        )
        try:
            server.start(ready=ready, timeout=timeout)
            yield server
        finally:
            server.stop()


serve = KnnServe.serve
