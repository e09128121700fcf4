"""Operator settings, from the environment (the Helm chart sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    builder_image: str = "ghcr.io/knn-operator/knn-serving:0.1.0"
    serving_image: str = "ghcr.io/knn-operator/knn-serving:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    pvc_root: str = "/mnt/pvc"
    serving_port: int = 8080
    resync_seconds: float = 30.0
    # Reconciles in flight at once: a burst of thousands of objects otherwise holds
    # thousands of bodies, plans and API calls in memory and in the API server's queues.
    max_concurrent_reconciles: int = 16

    @classmethod
    def from_env(cls) -> Settings:
        d = cls()
        return cls(
            builder_image=os.environ.get("KNN_BUILDER_IMAGE", d.builder_image),
            serving_image=os.environ.get("KNN_SERVING_IMAGE", d.serving_image),
            image_pull_policy=os.environ.get("KNN_IMAGE_PULL_POLICY", d.image_pull_policy),
            pvc_root=os.environ.get("KNN_PVC_ROOT", d.pvc_root),
            resync_seconds=float(os.environ.get("KNN_RESYNC_SECONDS", d.resync_seconds)),
            max_concurrent_reconciles=int(
                os.environ.get("KNN_MAX_CONCURRENT_RECONCILES", d.max_concurrent_reconciles)
            ),
        )
