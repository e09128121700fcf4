"""Secrets → the credentials a Prometheus client sends. Pure: the caller reads the
Secrets (kube.py) and passes their `data` (base64 values, as the API returns them).

Errors name the Secret, the key and the spec field, so a user can fix the one
that is wrong; they are raised before any query, and the caller reports them
(reason knn_contracts.rollout.REASON_PROMETHEUS_CREDENTIALS).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..models.prometheus import PrometheusProvider

FIELD = "spec.rollout.analysis.prometheus"  # the default; the drift trigger names its own


class CredentialsError(ValueError):
    """A Secret or a key the spec names is missing or unreadable."""


@dataclass(frozen=True)
class Credentials:
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_pem: str | None = None

    def __repr__(self) -> str:  # never print a secret into a log
        kinds = [k for k in ("bearer_token", "username", "ca_pem") if getattr(self, k)]
        return f"Credentials({', '.join(kinds) or 'none'})"


def secrets_needed(provider: PrometheusProvider) -> set[str]:
    """Names of the Secrets to read for this provider."""
    out = set()
    if provider.auth is not None:
        out.add(provider.auth.secret_name)
    if provider.ca_bundle is not None:
        out.add(provider.ca_bundle.secret_name)
    return out


def _value(secrets: Mapping[str, Mapping[str, str] | None], name: str, key: str, spec: str) -> str:
    data = secrets.get(name)
    if data is None:
        raise CredentialsError(f"Secret {name!r} ({spec}) not found")
    if key not in data:
        present = ", ".join(sorted(data)) or "none"
        raise CredentialsError(f"Secret {name!r} has no key {key!r} ({spec}); its keys: {present}")
    try:
        text = base64.b64decode(data[key], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise CredentialsError(f"Secret {name!r} key {key!r}: not base64 UTF-8 text ({e})") from e
    if not text.strip():
        raise CredentialsError(f"Secret {name!r} key {key!r} ({spec}) is empty")
    return text


def resolve(
    provider: PrometheusProvider,
    secrets: Mapping[str, Mapping[str, str] | None],
    field: str = FIELD,
) -> Credentials:
    """Credentials from `secrets` (name → data, None for a Secret that does not exist)."""
    auth, ca = provider.auth, provider.ca_bundle
    token = username = password = ca_pem = None
    if auth is not None and auth.bearer_token_key is not None:
        token = _value(
            secrets, auth.secret_name, auth.bearer_token_key, f"{field}.auth.bearerTokenKey"
        )
        token = token.strip()  # a token file's trailing newline is no part of it
    if auth is not None and auth.username_key is not None and auth.password_key is not None:
        username = _value(secrets, auth.secret_name, auth.username_key, f"{field}.auth.usernameKey")
        password = _value(secrets, auth.secret_name, auth.password_key, f"{field}.auth.passwordKey")
    if ca is not None:
        ca_pem = _value(secrets, ca.secret_name, ca.key, f"{field}.caBundle.key")
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise CredentialsError(
                f"Secret {ca.secret_name!r} key {ca.key!r} ({field}.caBundle) holds no PEM "
                "certificate"
            )
    return Credentials(token, username, password, ca_pem)
