"""The replica router: one Service selects every serving revision of an index,
so each revision gets traffic in proportion to its ready replicas.

The stable keeps its full replica count for the whole rollout, so an abort is one
write (the canary to zero) and never waits for the stable to scale back up. The
canary gets c replicas with c/(n+c) closest to the weight asked for, at least one
for any weight above zero: with n = 2, weights 10 to 40 give 1 canary (33%), 50
gives 2 (50%), 70 gives 5 (71%). At 100 the canary runs n replicas beside the
stable's n (50%) until promotion, when the stable scales to zero; it cannot stay
warm, since every running pod behind the Service takes traffic.
"""

from __future__ import annotations

from ..builders.common import Manifest, Owner
from ..builders.service import index_service
from . import Split

# A canary never gets more than this many times the stable's replicas (a weight
# of 90 asks for 9 times; 99 would ask for 99 times).
MAX_CANARY_FACTOR = 9


class ReplicaRouter:
    name = "replicas"
    keeps_warm = False

    def split(self, replicas: int, weight: int) -> Split:
        if weight <= 0:
            return Split(replicas, 0)
        if weight >= 100:
            return Split(replicas, max(replicas, 1))
        n = max(replicas, 1)
        wanted = n * weight / (100 - weight)
        canary = max(1, min(round(wanted), MAX_CANARY_FACTOR * n))
        return Split(replicas, canary)

    def delivered(self, stable_available: int, canary_available: int, weight: int) -> int:
        total = stable_available + canary_available
        return round(100 * canary_available / total) if total else 0

    def objects(
        self, owner: Owner, stable: str | None, canary: str | None, weight: int
    ) -> list[Manifest]:
        return [index_service(owner)]
