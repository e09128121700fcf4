"""Readable views of a KnnIndex's or a ClusterModel's status for `kubectl knn`.
Pure: the object and the time come in, text goes out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ..timeutil import duration_seconds, parse_iso

Obj = Mapping[str, Any]


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, like kubectl's tables."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _ago(when: str | None, now: dt.datetime) -> str:
    t = parse_iso(when)
    return "-" if t is None else _span((now - t).total_seconds()) + " ago"


def _span(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _is_model(obj: Obj) -> bool:
    return obj.get("kind") == "ClusterModel"


def _revision_line(rev: Obj | None, extra: str = "") -> str:
    if rev is None:
        return "-"
    # A model's revisions have no efSearch: nothing else differs between two of them.
    ef = f"  efSearch {rev['efSearch']}" if rev.get("efSearch") is not None else ""
    return f"{rev['revision']}{ef}  workers {rev.get('workers')}" + extra


def _quality(obj: Obj) -> str:
    """What the stable version measured: an index's recall, a model's k and silhouette."""
    st: Obj = obj.get("status") or {}
    if _is_model(obj):
        parts = [f"k {st['clusters']}"] if st.get("clusters") is not None else []
        if st.get("silhouette") is not None:
            parts.append(f"silhouette {st['silhouette']:.4f}")
        if st.get("inertia") is not None:
            parts.append(f"inertia {st['inertia']:.6g}")
        return "".join(f"  {p}" for p in parts)
    recall = st.get("recall")
    return f"  recall {recall:.4f}" if recall is not None else ""


def _step_line(spec: Obj, status: Obj, now: dt.datetime) -> str:
    steps: list[Obj] = list((spec.get("rollout") or {}).get("steps") or [])
    state: Obj = status.get("rollout") or {}
    if not state:
        return "-"
    i = int(state.get("step", 0))
    if not steps:
        return "no steps: promoted once available"
    if i >= len(steps):
        return f"{len(steps)}/{len(steps)} done, waiting for an analysis run"
    step = steps[i]
    if "setWeight" in step:
        what = f"setWeight {step['setWeight']} (waiting for the canary to be available)"
    else:
        duration = (step.get("pause") or {}).get("duration")
        if duration is None:
            what = "pause until `kubectl knn promote`"
        else:
            started = parse_iso(state.get("stepStartedAt")) or now
            left = duration_seconds(duration) - (now - started).total_seconds()
            what = f"pause {duration}, {_span(left)} left"
    held = f"; held: {state['pausedReason']}" if state.get("pausedReason") else ""
    return f"{i + 1}/{len(steps)}  {what}{held}"


def status_view(index: Obj, now: dt.datetime) -> str:
    meta, spec, st = index["metadata"], index.get("spec") or {}, index.get("status") or {}
    revs = {r["revision"]: r for r in st.get("revisions") or []}
    stable, canary = st.get("stableRevision"), st.get("canaryRevision")
    kind = "ClusterModel " if _is_model(index) else ""
    lines = [
        f"Name:       {kind}{meta['name']}  (namespace {meta.get('namespace', '')})",
        f"Phase:      {st.get('phase', '-')}" + (f"  {st['message']}" if st.get("message") else ""),
        "Stable:     " + _revision_line(revs.get(stable), _quality(index)),
    ]
    if canary:
        state = st.get("rollout") or {}
        weight = f"  weight {st.get('canaryWeight', 0)}% (steps ask {state.get('weight', 0)}%)"
        lines.append("Canary:     " + _revision_line(revs.get(canary), weight))
        lines.append("Step:       " + _step_line(spec, st, now))
    rolled = st.get("rolledBack")
    if rolled:
        when = _ago(rolled["at"], now)
        lines.append(f"RolledBack: {rolled['revision']} ({rolled['cause']}, {when})")
    lines += _rebuild_lines(spec, st, now)
    lines += _analysis_lines(spec, st, now)
    return "\n".join(lines)


def _rebuild_lines(spec: Obj, st: Obj, now: dt.datetime) -> list[str]:
    """The retraining triggers: the schedule's next fire, the drift, the last trigger."""
    rebuild: Obj = spec.get("rebuild") or {}
    out = []
    if rebuild.get("schedule"):
        due = parse_iso(st.get("nextScheduledRebuild"))
        nxt = "-" if due is None else "in " + _span((due - now).total_seconds())
        out.append(f"Schedule:   {rebuild['schedule']!r} (UTC), next {nxt}")
    on_drift: Obj = rebuild.get("onDrift") or {}
    drift: Obj = st.get("drift") or {}
    if on_drift:
        value = drift.get("value")
        shown = "-" if value is None else f"{value:.4g}"
        held = f" since {_ago(drift['aboveSince'], now)}" if drift.get("aboveSince") else ""
        out.append(
            f"Drift:      {shown} ({drift.get('result', 'not measured')}{held}), "
            f"threshold {on_drift.get('threshold')} for {on_drift.get('for', '10m')}"
        )
    last: Obj = st.get("lastRebuild") or {}
    if last:
        value = f", value {last['value']:.4g}" if last.get("value") is not None else ""
        out.append(
            f"Rebuilt:    {last.get('reason')} {_ago(last.get('at'), now)} "
            f"-> version {last.get('version')}{value}"
        )
    return out


def _analysis_lines(spec: Obj, st: Obj, now: dt.datetime) -> list[str]:
    analysis_spec: Obj = (spec.get("rollout") or {}).get("analysis") or {}
    if not analysis_spec:
        return []
    state: Obj = st.get("rollout") or {}
    tally: Obj = st.get("analysis") or {}
    due = parse_iso(state.get("nextAnalysisAt"))
    if due is None:
        nxt = "-"
    else:
        nxt = "now" if due <= now else "in " + _span((due - now).total_seconds())
    out = [
        f"Analysis:   every {analysis_spec.get('interval', '30s')}, next {nxt};"
        f" failures {tally.get('failures', 0)}/{analysis_spec.get('failureLimit', 1)},"
        f" inconclusive {tally.get('inconclusive', 0)}/{analysis_spec.get('inconclusiveLimit', 3)}"
    ]
    measured: list[Obj] = list(tally.get("lastMeasurements") or [])
    if measured:
        rows = [["CHECK", "REVISION", "VALUE", "LIMIT", "RESULT", "AT"]]
        for m in measured[-10:]:
            value = m.get("value")
            rows.append(
                [
                    str(m.get("check") or m.get("metric") or "-"),
                    str(m.get("revision") or "-"),
                    "-" if value is None else f"{value:.4g}",
                    str(m.get("limit") or "-"),
                    str(m.get("result") or m.get("phase") or "-"),
                    _ago(m.get("at"), now),
                ]
            )
        out += ["", *("  " + line for line in table(rows).splitlines())]
    return out


def history_view(obj: Obj, now: dt.datetime) -> str:
    st = obj.get("status") or {}
    model = _is_model(obj)
    rows = [["REVISION", "VERSION", *([] if model else ["EFSEARCH"]), "STATE", "SINCE", "MESSAGE"]]
    for r in st.get("revisions") or []:
        ef = [] if model else [str(r.get("efSearch"))]
        since = _ago(r.get("since"), now)
        rows.append([r["revision"], r["version"], *ef, r["state"], since, r.get("message") or ""])
    # What each build measured: recall at an efSearch, or k, silhouette and inertia.
    measured = ["K", "SILHOUETTE", "INERTIA"] if model else ["RECALL", "EFSEARCH"]
    builds = [["VERSION", "OUTCOME", "VECTORS", *measured, "FINISHED", "MESSAGE"]]
    for b in st.get("builds") or []:
        keys = ("clusters", "silhouette", "inertia") if model else ("recall", "efSearch")
        values = ["-" if b.get(key) is None else f"{b[key]:.6g}" for key in keys]
        builds.append(
            [
                b["version"],
                b["outcome"],
                str(b.get("vectors") or "-"),
                *values,
                _ago(b.get("finished"), now),
                (b.get("message") or "")[:60],
            ]
        )
    return "Revisions:\n" + table(rows) + "\n\nBuilds:\n" + table(builds)
