"""One analysis run: every check queried once, concurrently, and judged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .assess import CheckResult, judge
from .checks import Check
from .provider import MetricProvider


async def measure(provider: MetricProvider, checks: Sequence[Check]) -> list[CheckResult]:
    samples = await asyncio.gather(*(provider.query(c.query) for c in checks))
    return [judge(c, s) for c, s in zip(checks, samples, strict=True)]
