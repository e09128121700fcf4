"""Secret data (base64, as the API returns it) → Prometheus credentials, with errors
that name the Secret, the key and the spec field."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from knn_operator.analysis import Credentials, CredentialsError, resolve, secrets_needed
from knn_operator.models.knnindex import PrometheusProvider

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def provider(**extra: Any) -> PrometheusProvider:
    return PrometheusProvider.model_validate({"address": "https://prom:9090", **extra})


BEARER = provider(auth={"secretName": "prom", "bearerTokenKey": "token"})
BASIC = provider(auth={"secretName": "prom", "usernameKey": "user", "passwordKey": "pass"})


def test_no_auth_needs_no_secret() -> None:
    assert secrets_needed(provider()) == set()
    assert resolve(provider(), {}) == Credentials()


def test_bearer_token_without_its_trailing_newline() -> None:
    creds = resolve(BEARER, {"prom": {"token": b64("s3cret\n")}})
    assert creds == Credentials(bearer_token="s3cret")
    assert "s3cret" not in repr(creds)


def test_basic_auth_and_ca_bundle() -> None:
    p = provider(
        auth={"secretName": "prom", "usernameKey": "user", "passwordKey": "pass"},
        caBundle={"secretName": "prom-ca"},
    )
    assert secrets_needed(p) == {"prom", "prom-ca"}
    secrets = {"prom": {"user": b64("knn"), "pass": b64("pw")}, "prom-ca": {"ca.crt": b64(PEM)}}
    creds = resolve(p, secrets)
    assert (creds.username, creds.password, creds.ca_pem) == ("knn", "pw", PEM)
    assert "pw" not in repr(creds)


@pytest.mark.parametrize(
    ("spec", "secrets", "message"),
    [
        (
            BEARER,
            {},
            "Secret 'prom' (spec.rollout.analysis.prometheus.auth.bearerTokenKey) not found",
        ),
        (
            BEARER,
            {"prom": None},
            "Secret 'prom' (spec.rollout.analysis.prometheus.auth.bearerTokenKey) not found",
        ),
        (
            BEARER,
            {"prom": {"tok": b64("x")}},
            "Secret 'prom' has no key 'token' (spec.rollout.analysis.prometheus.auth."
            "bearerTokenKey); its keys: tok",
        ),
        (
            BASIC,
            {"prom": {"user": b64("knn")}},
            "Secret 'prom' has no key 'pass' (spec.rollout.analysis.prometheus.auth.passwordKey)"
            "; its keys: user",
        ),
        (BEARER, {"prom": {"token": "not base64!"}}, "key 'token': not base64 UTF-8 text"),
        (
            BEARER,
            {"prom": {"token": b64(" \n")}},
            "key 'token' (spec.rollout.analysis.prometheus.auth.bearerTokenKey) is empty",
        ),
        (
            provider(caBundle={"secretName": "ca", "key": "bundle.pem"}),
            {"ca": {"bundle.pem": b64("hello")}},
            "Secret 'ca' key 'bundle.pem' (spec.rollout.analysis.prometheus.caBundle) holds no "
            "PEM certificate",
        ),
        (
            provider(caBundle={"secretName": "ca"}),
            {"ca": {}},
            "Secret 'ca' has no key 'ca.crt' (spec.rollout.analysis.prometheus.caBundle.key); "
            "its keys: none",
        ),
    ],
)
def test_errors_name_secret_key_and_field(
    spec: PrometheusProvider, secrets: dict[str, Any], message: str
) -> None:
    with pytest.raises(CredentialsError) as e:
        resolve(spec, secrets)
    assert message in str(e.value)
