"""Progress lines: rate-limited, with percent, vectors/s and ETA, on a fake clock."""

from __future__ import annotations

import logging

import pytest
from knn_serving.build.progress import Progress


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO, logger="test-progress")
    return logging.getLogger("test-progress")


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test-progress"]


def test_lines_are_rate_limited_and_carry_rate_and_eta(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    p = Progress(1000, logger, every_seconds=5.0, clock=clock)

    clock.now += 1.0
    p.advance(50)
    clock.now += 1.0
    p.advance(50)
    assert messages(caplog) == [], "logged before every_seconds passed"

    clock.now += 3.0  # 5 s in, 250 done: 50 vectors/s, 750 left -> 15 s
    p.advance(150)
    lines = messages(caplog)
    assert len(lines) == 1
    assert "25.0%" in lines[0]
    assert "(250/1000)" in lines[0]
    assert "50 vectors/s" in lines[0]
    assert "elapsed 5s" in lines[0]
    assert "ETA 15s" in lines[0]

    clock.now += 4.9  # not yet 5 s since the last line
    p.advance(100)
    assert len(messages(caplog)) == 1

    clock.now += 0.1
    p.advance(100)  # 10 s in, 450 done: 45 vectors/s, 550 left -> 12 s
    lines = messages(caplog)
    assert len(lines) == 2
    assert "45.0%" in lines[1]
    assert "45 vectors/s" in lines[1]
    assert "ETA 12s" in lines[1]


def test_the_last_step_always_logs_100_percent(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    p = Progress(400, logger, every_seconds=60.0, clock=clock)
    clock.now += 2.0
    p.advance(300)
    assert messages(caplog) == []
    clock.now += 2.0
    p.advance(100)
    (line,) = messages(caplog)
    assert "100.0%" in line
    assert "(400/400)" in line
    assert "100 vectors/s" in line
    assert "ETA 0s" in line


def test_large_rates_use_thousands_separators(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    p = Progress(10_000_000, logger, every_seconds=1.0, clock=clock)
    clock.now += 2.0
    p.advance(2_500_000)
    (line,) = messages(caplog)
    assert "1,250,000 vectors/s" in line
    assert "ETA 6s" in line


def test_line_without_progress_has_unknown_eta(logger: logging.Logger) -> None:
    clock = FakeClock()
    p = Progress(100, logger, clock=clock)
    clock.now += 3.0
    line = p.line(clock.now)
    assert "0.0%" in line
    assert "0 vectors/s" in line
    assert "ETA ?" in line


def test_empty_total_reports_complete(logger: logging.Logger) -> None:
    clock = FakeClock()
    p = Progress(0, logger, clock=clock)
    assert "100.0%" in p.line(clock.now)
