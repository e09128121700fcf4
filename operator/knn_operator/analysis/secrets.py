"""Reading the Secrets a Prometheus provider names, for the canary analysis and the
drift trigger alike (I/O: the Kubernetes API)."""

from __future__ import annotations

from ..kube import Forbidden, Kube, KubeError
from ..models.prometheus import PrometheusProvider
from .credentials import FIELD, Credentials, CredentialsError, resolve, secrets_needed


async def credentials_for(
    kube: Kube, namespace: str, provider: PrometheusProvider, field: str = FIELD
) -> Credentials:
    """The provider's credentials; CredentialsError says what is missing, or that the
    chart was installed without read access to Secrets. `field` is where the spec
    names the provider, for the messages."""
    try:
        names = sorted(secrets_needed(provider))
        secrets = {s: await kube.secret_data(namespace, s) for s in names}
    except KubeError as e:
        if e.status != Forbidden:
            raise
        raise CredentialsError(
            f"the operator may not read Secrets in {namespace} ({e.message}); "
            "install the chart with rbac.prometheusSecrets=true"
        ) from e
    return resolve(provider, secrets, field)
