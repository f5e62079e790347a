"""POST /feedback: the actual outcomes of earlier predictions, joined to them later by request id.

The body is one actual, or `{"actuals": [...]}` with 1 to `max_items` of them. Strict like the
predict request (no coercion, unknown fields rejected), validated by the RequestGuard with this
model so a bad body gets a 400 naming the field (`actuals[3].request_id`).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    RootModel,
    Tag,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
MAX_ACTUAL_CHARS = 256


def _number_or_string(v: Any) -> float | str:
    ok = (isinstance(v, int | float) and not isinstance(v, bool)) or (
        isinstance(v, str) and 0 < len(v) <= MAX_ACTUAL_CHARS
    )
    if not ok:
        raise PydanticCustomError("actual_type", "expected a number or a string")
    if isinstance(v, int | float):
        # The monitor reads every actual as a float: a 400-digit integer would make each of its
        # later runs fail, so a number a float cannot hold is refused here, where it is sent.
        try:
            finite = math.isfinite(float(v))
        except OverflowError:
            finite = False
        if not finite:
            raise PydanticCustomError("actual_range", "expected a finite number a float can hold")
    return v


def _in_utc(v: dt.datetime | None) -> dt.datetime | None:
    """The time in UTC (no offset given: UTC); one that UTC cannot represent is refused."""
    if v is None:
        return None
    try:
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "out of range in UTC") from None


# A number (regression target) or a string (class label). One validator, so an error names the
# field once (a union would report one error per member).
ActualValue = Annotated[
    float | str,
    PlainValidator(_number_or_string),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string", "minLength": 1, "maxLength": 256}],
            "description": "The observed outcome: a number, or a class label.",
        }
    ),
]


class Actual(BaseModel):
    model_config = STRICT
    request_id: str = Field(
        min_length=1,
        max_length=128,
        description="The x-request-id of the prediction this is the outcome of.",
    )
    actual: ActualValue
    observed_at: Annotated[dt.datetime | None, AfterValidator(_in_utc)] = Field(
        default=None,
        description="When the outcome was observed (ISO 8601; no timezone: UTC). Default: now.",
    )


def feedback_request(max_items: int) -> type[RootModel[Any]]:
    class Actuals(BaseModel):
        model_config = STRICT
        actuals: list[Actual] = Field(
            min_length=1, max_length=max_items, description=f"1 to {max_items} actuals."
        )

    def shape(v: Any) -> str:
        if isinstance(v, dict):
            return "many" if "actuals" in v else "one"
        return "many" if isinstance(v, Actuals) else "one"

    body = Annotated[
        Annotated[Actual, Tag("one")] | Annotated[Actuals, Tag("many")], Discriminator(shape)
    ]
    example: Any = {
        "actuals": [
            {"request_id": "3f2a9c", "actual": 21.5, "observed_at": "2026-12-04T15:00:00Z"},
            {"request_id": "77b0e1", "actual": 3.0},
        ]
    }

    class FeedbackRequest(RootModel[body]):
        model_config = ConfigDict(json_schema_extra={"example": example})

    return FeedbackRequest


def items(body: Any) -> list[Actual]:
    """The actuals of a validated body (one, or a batch)."""
    return [body] if isinstance(body, Actual) else list(body.actuals)


class FeedbackAccepted(BaseModel):
    accepted: int = Field(description="Actuals written to the actuals log.")
