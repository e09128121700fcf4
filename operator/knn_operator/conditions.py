"""metav1.Condition bookkeeping. Pure: the clock is passed in."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from .models.common import Condition
from .timeutil import iso


def set_condition(
    existing: list[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: dt.datetime,
) -> list[Condition]:
    """Replace the condition of `type_`, keeping lastTransitionTime if status is unchanged."""
    value: Literal["True", "False", "Unknown"] = (
        "Unknown" if status is None else ("True" if status else "False")
    )
    previous = next((c for c in existing if c.type == type_), None)
    since = previous.last_transition_time if previous and previous.status == value else iso(now)
    new = Condition(
        type=type_,
        status=value,
        observed_generation=generation,
        last_transition_time=since,
        reason=reason,
        message=message,
    )
    return [c for c in existing if c.type != type_] + [new]
