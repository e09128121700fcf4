"""Self-contained kubeconfig files (credentials embedded, no paths to other files).

Embedding the data means a kubeconfig stays valid wherever it is copied and does
not dangle when the control plane's temporary directory is removed.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def build(
    server: str,
    ca_pem: bytes,
    *,
    user: str,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    token: str | None = None,
    namespace: str | None = None,
    name: str = "knn-local",
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one current context.

    Give either a client certificate and key or a bearer token.
    """
    if (client_cert_pem is None) != (client_key_pem is None):
        raise ValueError("client_cert_pem and client_key_pem go together")
    if (client_cert_pem is None) == (token is None):
        raise ValueError("give exactly one credential: a client certificate or a token")
    credentials: dict[str, str]
    if token is not None:
        credentials = {"token": token}
    else:
        assert client_cert_pem is not None and client_key_pem is not None
        credentials = {
            "client-certificate-data": _b64(client_cert_pem),
            "client-key-data": _b64(client_key_pem),
        }
    context: dict[str, str] = {"cluster": name, "user": user}
    if namespace is not None:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    """Writes ``config`` owner-readable only (it holds a credential); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.touch(mode=0o600, exist_ok=True)
    tmp.chmod(0o600)
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    # A reader polling for the file never sees it half-written.
    tmp.replace(path)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
