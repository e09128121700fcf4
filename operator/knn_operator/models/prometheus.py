"""Where a Prometheus is and how to reach it: shared by the canary analysis and the
drift trigger of every kind."""

from __future__ import annotations

from pydantic import Field

from .common import DNS_LABEL_PATTERN, DURATION_PATTERN, Model, cel, validations


class PrometheusAuth(Model):
    """Credentials from a Secret in the object's namespace: a bearer token, or basic auth."""

    secret_name: str = Field(
        pattern=DNS_LABEL_PATTERN, max_length=253, description="Secret holding the credentials"
    )
    bearer_token_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Key of the bearer token (sent as Authorization: Bearer)",
    )
    username_key: str | None = Field(
        default=None, min_length=1, max_length=253, description="Key of the basic-auth username"
    )
    password_key: str | None = Field(
        default=None, min_length=1, max_length=253, description="Key of the basic-auth password"
    )

    model_config = validations(
        cel(
            "has(self.bearerTokenKey) != (has(self.usernameKey) || has(self.passwordKey))",
            "give bearerTokenKey, or usernameKey and passwordKey (basic auth), not both",
        ),
        cel(
            "has(self.usernameKey) == has(self.passwordKey)",
            "basic auth needs both usernameKey and passwordKey",
        ),
    )


class SecretKey(Model):
    secret_name: str = Field(
        pattern=DNS_LABEL_PATTERN, max_length=253, description="Secret in the object's namespace"
    )
    key: str = Field(default="ca.crt", min_length=1, max_length=253, description="Key in its data")


class PrometheusProvider(Model):
    address: str = Field(
        pattern=r"^https?://.+",
        max_length=2048,
        description="Base URL of the Prometheus HTTP API (/api/v1/query is appended)",
    )
    timeout: str = Field(
        default="10s",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="Per query; a query that takes longer is an error, not a value",
    )
    auth: PrometheusAuth | None = Field(
        default=None, description="Bearer token or basic auth from a Secret"
    )
    ca_bundle: SecretKey | None = Field(
        default=None,
        description="PEM CA certificates to verify an https:// address with (instead of the "
        "system's)",
    )

    model_config = validations(
        cel(
            "!has(self.caBundle) || self.address.startsWith('https://')",
            "caBundle needs an https:// address",
            field_path=".caBundle",
        ),
    )
