"""Recall validation: the recall-versus-efSearch curve and the gate on it.

Probes are searched exactly as new queries are: held-out rows are not in the
graph (they sit in the exact side list, their own row excluded from the answer),
and user-given probe queries are not rows at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import hnswlib
from knn_contracts.artifact import CurvePoint, recall_at, smallest_ef_reaching

from ..artifact import Probes
from ..exact import recall_at_k
from ..search import knn
from ..sidelist import SideList

# efSearch rungs of the curve; `ef_ladder` keeps those >= k and adds k and the
# requested efSearch. Roughly x1.5 steps: fine where recall changes fast.
LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


class RecallTooLowError(Exception):
    def __init__(self, message: str, recall: float) -> None:
        super().__init__(message)
        self.recall = recall


def ef_ladder(k: int, ef_search: int | None, rungs: Iterable[int] = LADDER) -> list[int]:
    ladder = {ef for ef in rungs if ef >= k} | {k}
    if ef_search is not None:
        ladder.add(ef_search)
    return sorted(ladder)


# Probes timed one at a time, on one thread, per rung (the recall uses them all).
TIMED_PROBES = 64


def measure_curve(
    index: hnswlib.Index,
    side: SideList,
    probes: Probes,
    ladder: list[int],
    must: int | None,
    threads: int = 1,
) -> list[CurvePoint]:
    """Recall@k (all probes, `threads` threads) and mean one-thread search time
    (graph and side list, the first TIMED_PROBES probes) at each rung.

    Stops after the first rung with recall 1.0, unless `must` is still ahead."""
    k = int(probes.truth.shape[1])
    exclude = probes.self_labels if (probes.self_labels >= 0).any() else None
    timed = min(TIMED_PROBES, len(probes.queries))
    curve: list[CurvePoint] = []
    for ef in ladder:
        index.set_ef(ef)
        found, _ = knn(index, side, probes.queries, k, threads=threads, exclude=exclude)
        recall = recall_at_k(found.astype("int64", copy=False), probes.truth)
        start = time.perf_counter()
        for i in range(timed):
            one = None if exclude is None else exclude[i : i + 1]
            knn(index, side, probes.queries[i : i + 1], k, threads=1, exclude=one)
        seconds = time.perf_counter() - start
        curve.append(
            CurvePoint(
                ef_search=ef,
                recall=round(recall, 6),
                latency_us=round(seconds * 1e6 / max(1, timed), 1),
            )
        )
        if recall >= 1.0 and (must is None or ef >= must):
            break
    return curve


def gate(
    curve: list[CurvePoint], ef_search: int | None, min_recall: float, probes: int
) -> tuple[int, float]:
    """The efSearch to serve at and its recall, or RecallTooLowError.

    With an efSearch given, its recall must reach min_recall; without one, the
    artifact passes if any measured efSearch does, and the smallest such is the
    default serving efSearch."""
    best = smallest_ef_reaching(curve, min_recall)
    top = max(curve, key=lambda p: p.ef_search)
    if ef_search is None:
        if best is None:
            raise RecallTooLowError(
                f"recall {top.recall:.4f} at efSearch {top.ef_search} on {probes} "
                f"probe queries is below --min-recall {min_recall}, and no lower efSearch "
                "reaches it; raise --m or --ef-construction",
                top.recall,
            )
        chosen = best
    else:
        chosen = ef_search
    recall = recall_at(curve, chosen)
    assert recall is not None  # the ladder always holds the requested efSearch and k
    if recall < min_recall:
        hint = (
            f"efSearch {best} reaches {recall_at(curve, best):.4f}: raise --ef-search"
            if best is not None
            else "no measured efSearch reaches it: raise --m or --ef-construction"
        )
        raise RecallTooLowError(
            f"recall {recall:.4f} at efSearch {chosen} on {probes} probe queries "
            f"is below --min-recall {min_recall}; {hint}",
            recall,
        )
    return chosen, recall
