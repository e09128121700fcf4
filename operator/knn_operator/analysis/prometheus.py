"""The Prometheus HTTP API as a MetricProvider: POST /api/v1/query (a form body, so
long custom queries fit), with a timeout and optional credentials.

What comes back is sorted into the three outcomes of provider.Sample:
one series or a scalar with a finite value → Value; no series, NaN or ±Inf →
NoData; anything else → QueryError with a message a user can act on: HTTP status
(401 names the credentials), Prometheus' own errorType and error, a timeout, an
unreachable address, or more than one series (aggregate the query).
"""

from __future__ import annotations

import base64
import json
import math
import ssl
from types import TracebackType
from typing import Any, Self

import aiohttp

from ..models.prometheus import PrometheusProvider
from .credentials import Credentials
from .provider import NoData, QueryError, Sample, Value
from .window import parse_duration

MAX_BODY = 1 << 20  # one number is expected; a larger answer is a query to aggregate
_SHOWN_SERIES = 3


class Prometheus:
    """One client per address and credentials; `async with` closes its connections."""

    def __init__(
        self, address: str, *, timeout: float = 10.0, credentials: Credentials | None = None
    ) -> None:
        self.address = address.rstrip("/")
        self.url = f"{self.address}/api/v1/query"
        self.timeout = timeout
        creds = credentials or Credentials()
        headers = {"Accept": "application/json"}
        if creds.bearer_token:
            headers["Authorization"] = f"Bearer {creds.bearer_token}"
        elif creds.username is not None:
            pair = f"{creds.username}:{creds.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cadata=creds.ca_pem) if creds.ca_pem else True
        )
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def of(cls, spec: PrometheusProvider, credentials: Credentials | None = None) -> Prometheus:
        """A client for the spec's address and timeout, with resolved credentials."""
        timeout = parse_duration(spec.timeout).total_seconds()
        return cls(spec.address, timeout=timeout, credentials=credentials)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def query(self, promql: str) -> Sample:
        try:
            async with self._client().post(self.url, data={"query": promql}, ssl=self._ssl) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                status = resp.status
        except TimeoutError:
            return QueryError(
                f"Prometheus at {self.address} did not answer within {self.timeout:g}s"
            )
        except aiohttp.ClientError as e:
            return QueryError(f"cannot query Prometheus at {self.address}: {type(e).__name__}: {e}")
        if len(body) > MAX_BODY:
            return QueryError(f"answer larger than {MAX_BODY} bytes; aggregate the query")
        return parse_response(status, body)


def parse_response(status: int, body: bytes) -> Sample:
    """An /api/v1/query answer (HTTP status and body) → Sample."""
    doc: Any
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        text = body[:200].decode("utf-8", "replace").strip()
        hint = " (check the credentials)" if status in (401, 403) else ""
        return QueryError(f"HTTP {status}{hint}: not a Prometheus API answer: {text!r}")
    if doc.get("status") != "success" or status != 200:
        kind, error = doc.get("errorType", "unknown"), doc.get("error", "no message")
        return QueryError(f"HTTP {status}: Prometheus {kind} error: {error}")
    data = doc.get("data")
    if not isinstance(data, dict):
        return QueryError("Prometheus answer has no data")
    return _sample(data.get("resultType"), data.get("result"))


def _sample(kind: object, result: object) -> Sample:
    if kind == "scalar":
        return _number(result)
    if kind != "vector":
        return QueryError(f"a {kind} result; the query must return an instant vector or a scalar")
    if not isinstance(result, list):
        return QueryError("a vector result that is not a list")
    if not result:
        return NoData("no series")
    if len(result) > 1:
        shown = ", ".join(_labels(s) for s in result[:_SHOWN_SERIES])
        more = ", …" if len(result) > _SHOWN_SERIES else ""
        return QueryError(
            f"{len(result)} series ({shown}{more}); one is expected: aggregate the query "
            "(e.g. sum(...), avg(...) or max(...))"
        )
    series = result[0]
    return _number(series.get("value") if isinstance(series, dict) else None)


def _number(pair: object) -> Sample:
    """Prometheus' [timestamp, "value"] pair; NaN and ±Inf are no data."""
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
        return QueryError(f"unreadable sample {pair!r}")
    try:
        v = float(pair[1])
    except ValueError:
        return QueryError(f"unreadable value {pair[1]!r}")
    if not math.isfinite(v):
        return NoData(pair[1])
    return Value(v)


def _labels(series: object) -> str:
    metric = series.get("metric", {}) if isinstance(series, dict) else {}
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()))
    return "{" + inner + "}"
