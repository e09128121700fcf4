"""What the two background supervisors share: ``make up`` (knn_devtools.cluster_cli) and
``make controlplane-up`` (knn_devtools.controlplane_cli).

Each runs ``python -m MODULE run --dir DIR`` in its own session, records itself in a
JSON state file in DIR once its stack is ready, and stops on SIGTERM (``down``),
SIGINT or SIGHUP, removing that file.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class SavedState:
    """Mixin for a frozen dataclass kept as ``DIR/FILE`` (JSON)."""

    FILE: ClassVar[str]
    # What an unreadable file raises: the caller's own error type, which its CLI reports.
    ERROR: ClassVar[type[Exception]]

    def save(self, directory: Path) -> None:
        # Written aside and renamed: `up` polls for the file and must never read half of it.
        tmp = directory / f".{self.FILE}.tmp"
        data = asdict(cast("DataclassInstance", self))
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(directory / self.FILE)

    @classmethod
    def load(cls, directory: Path) -> Self | None:
        path = directory / cls.FILE
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise cls.ERROR(f"{path} is unreadable: {err}") from err
        return cls(**raw)


def cmdline_contains(pid: int, needle: str) -> bool:
    """Whether process ``pid`` runs with ``needle`` in its command line: guards against
    signalling a recycled pid that now belongs to someone else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return needle.encode() in cmdline


def stop_on_signals() -> threading.Event:
    """An Event that SIGTERM, SIGINT and SIGHUP set. Installed before the stack starts,
    so a ``down`` during a long start stops it cleanly once started instead of killing
    the supervisor halfway."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def supervise(
    stop: threading.Event,
    state: SavedState,
    directory: Path,
    check_running: Callable[[], None],
) -> None:
    """Saves ``state`` and waits for ``stop``; the state file goes when this returns or
    raises. ``check_running`` runs every second and raises when a component died: a
    half-working stack is worse than a clear "not running"."""
    state.save(directory)
    try:
        while not stop.wait(1.0):
            check_running()
    finally:
        (directory / state.FILE).unlink(missing_ok=True)
