"""The one place that talks to the Kubernetes API.

Every write is server-side apply with the field manager `knn-operator`; the
operator applies `status` through the status subresource and never sends
`spec` of its own resources.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from knn_contracts import api
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

Body = dict[str, Any]

# (apiVersion, kind) → plural. Only kinds the operator writes or reads.
_PLURALS: dict[tuple[str, str], str] = {
    ("batch/v1", "Job"): "jobs",
    ("apps/v1", "Deployment"): "deployments",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("v1", "Secret"): "secrets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    (api.API_VERSION, api.KNN_INDEX_KIND): api.KNN_INDEX_PLURAL,
    (api.API_VERSION, api.CLUSTER_MODEL_KIND): api.CLUSTER_MODEL_PLURAL,
    # Routes the user owns; the route routers change only their weights.
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("networking.istio.io/v1", "VirtualService"): "virtualservices",
    ("networking.istio.io/v1", "DestinationRule"): "destinationrules",
}
KIND_API_VERSION = {kind: av for (av, kind) in _PLURALS}

Forbidden = 403
NotFound = 404
Conflict = 409


class KubeError(Exception):
    """An API call that failed, with the API server's own status and message, so the
    rest of the operator never sees a client library's exception type."""

    def __init__(self, status: int, reason: str, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message

    @property
    def retryable(self) -> bool:
        """Worth retrying unchanged: conflicts, throttling, server errors, no answer (0).
        Not: a manifest the API server refuses (422, 400) or a missing permission (403),
        which only a change of spec, code or RBAC fixes (retried with a long backoff)."""
        return self.status in (0, Conflict, 429) or self.status >= 500


def _translate(e: Exception, method: str, path: str) -> KubeError:
    if isinstance(e, ApiException):
        reason, message = str(e.reason or ""), str(e.body or "")
        try:
            doc = json.loads(e.body) if e.body else {}
            reason = str(doc.get("reason") or reason)
            message = str(doc.get("message") or message)
        except (ValueError, TypeError, AttributeError):
            pass
        return KubeError(int(e.status or 0), reason, message, method, path)
    return KubeError(0, type(e).__name__, str(e) or repr(e), method, path)


def _path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    path = collection_path(api_version, kind, namespace)
    return f"{path}/{name}" if name else path


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    """A kind's collection in one namespace, or in all of them (namespace None)."""
    plural = _PLURALS[(api_version, kind)]
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{root}/namespaces/{namespace}/{plural}" if namespace else f"{root}/{plural}"


def _without_env_lookups(api_client: client.ApiClient) -> None:
    """kubernetes_asyncio makes its aiohttp session with trust_env=True, which reads
    ~/.netrc and the proxy variables in an executor thread on every request (6% of
    the operator's CPU with 5,000 objects). kopf, which runs the operator's other
    connections, does not trust the environment either (settings.networking);
    a proxy named in the kubeconfig is still used (it is passed per request)."""
    rest = api_client.rest_client
    old: aiohttp.ClientSession = rest.pool_manager
    connector = old.connector
    old.detach()  # closes the session but hands its connector (TLS, pool) over
    rest.pool_manager = aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=2**21
    )


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.client = api_client

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        """In-cluster credentials, or a kubeconfig: `kubeconfig`, else $KUBECONFIG
        or ~/.kube/config."""
        in_cluster = os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG")
        if in_cluster and kubeconfig is None:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(config_file=kubeconfig)
        api_client = client.ApiClient()
        _without_env_lookups(api_client)
        return cls(api_client)

    async def close(self) -> None:
        await self.client.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        try:
            result = await self._raw(method, path, body, query or [], content_type)
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as e:
            raise _translate(e, method, path) from e
        return result if isinstance(result, dict) else {}

    async def _raw(
        self, method: str, path: str, body: Any, query: list[tuple[str, str]], content_type: str
    ) -> Any:
        return await self.client.call_api(
            path,
            method,
            query_params=query,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            response_types_map={200: "object", 201: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )

    async def apply(
        self, obj: Body, *, status: bool = False, field_manager: str = api.FIELD_MANAGER
    ) -> Body:
        """Server-side apply; `status=True` applies to the status subresource."""
        meta = obj["metadata"]
        path = _path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        return await self._call(
            "PATCH",
            path + ("/status" if status else ""),
            body=obj,
            query=[("fieldManager", field_manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    async def replace(self, obj: Body) -> Body:
        """PUT under the object's resourceVersion: 409 if it changed since it was read.
        Only for objects the user owns, whose lists are atomic (route weights)."""
        meta = obj["metadata"]
        path = _path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        return await self._call("PUT", path, body=obj, query=[("fieldManager", api.FIELD_MANAGER)])

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Body | None:
        try:
            return await self._call("GET", _path(api_version, kind, namespace, name))
        except KubeError as e:
            if e.status == NotFound:
                return None
            raise

    async def list(
        self, api_version: str, kind: str, namespace: str, selector: str | None = None
    ) -> list[Body]:
        query = [("labelSelector", selector)] if selector else []
        out = await self._call("GET", _path(api_version, kind, namespace), query=query)
        return list(out.get("items") or [])

    async def list_page(self, path: str, selector: str, limit: int, continue_: str | None) -> Body:
        """One page of a collection: `items`, `metadata.resourceVersion` and
        `metadata.continue` (empty on the last page)."""
        query = [("limit", str(limit))]
        if selector:
            query.append(("labelSelector", selector))
        if continue_:
            query.append(("continue", continue_))
        return await self._call("GET", path, query=query)

    async def watch(
        self, path: str, selector: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[Body]:
        """Watch events ({type, object}) of a collection from `resource_version`, with
        bookmarks, until the API server ends the watch after `timeout_seconds`."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if selector:
            query.append(("labelSelector", selector))
        # No total timeout, but a silent stream (no bookmark for a minute past the
        # server's own end) is a dead one.
        timeout = aiohttp.ClientTimeout(sock_connect=30, sock_read=timeout_seconds + 60)
        try:
            response = await self.client.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as e:
            raise _translate(e, "WATCH", path) from e
        async with response:
            if response.status != 200:
                text = await response.text()
                raise KubeError(response.status, response.reason or "", text, "WATCH", path)
            try:
                async for line in response.content:
                    if line.strip():
                        yield json.loads(line)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise _translate(e, "WATCH", path) from e

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete with background propagation (a Job's pods go with it); absent is fine."""
        try:
            await self._call(
                "DELETE",
                _path(KIND_API_VERSION[kind], kind, namespace, name),
                body={
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "propagationPolicy": "Background",
                },
            )
        except KubeError as e:
            if e.status != NotFound:
                raise

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's `data` (base64 values, as stored), or None when it does not exist."""
        body = await self.get("v1", "Secret", namespace, name)
        if body is None:
            return None
        return {str(k): str(v) for k, v in (body.get("data") or {}).items()}
