"""POST /feedback: the actual outcomes of earlier predictions, joined to them later by request id.

The body is one actual, or `{"actuals": [...]}` with 1 to `max_items` of them. Strict like the
predict request (no coercion, unknown fields rejected), validated by the RequestGuard with this
model so a bad body gets a 400 naming the field (`actuals[3].request_id`). An actual must be one
of the served model (models/actuals.py): a regressor's number within its bound, a classifier's
class; one that is not would switch the monitor's checks off.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

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
    create_model,
)
from pydantic_core import PydanticCustomError

from models.actuals import SPAN_MULTIPLE, ActualRule
from serving.schema import of_their_kind

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
MAX_ACTUAL_CHARS = 256


def _label(v: Any) -> str | int:
    """A class label of a classifier whose classes were not recorded: a string or an integer."""
    ok = (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, str) and 0 < len(v) <= MAX_ACTUAL_CHARS
    )
    if not ok:
        raise PydanticCustomError("actual_type", "expected a class label")
    return v


def _in_utc(v: dt.datetime | None) -> dt.datetime | None:
    """The time in UTC (no offset given: UTC); one that UTC cannot represent is refused."""
    if v is None:
        return None
    try:
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "out of range in UTC") from None


def actual_type(rule: ActualRule) -> Any:
    """The type of `actual` for the served model (models/actuals.py): a regressor's number within
    its bound, a classifier's class. Plain pydantic types, so a refusal is in the API's words."""
    if rule.task == "regression":
        return Annotated[float, Field(ge=rule.low, le=rule.high)]
    if rule.classes is not None:
        return Annotated[Literal[tuple(rule.classes)], of_their_kind(tuple(rule.classes))]
    return Annotated[
        str | int,
        PlainValidator(_label),
        WithJsonSchema(
            {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1, "maxLength": 256}]}
        ),
    ]


def feedback_request(max_items: int, rule: ActualRule) -> type[RootModel[Any]]:
    # Built at run time: the type of `actual` is the served model's.
    Actual = create_model(
        "Actual",
        __config__=STRICT,
        request_id=(
            str,
            Field(
                min_length=1,
                max_length=128,
                description="The x-request-id of the prediction this is the outcome of.",
            ),
        ),
        actual=(actual_type(rule), Field(description=f"The observed outcome: {rule.expected()}.")),
        observed_at=(
            Annotated[dt.datetime | None, AfterValidator(_in_utc)],
            Field(
                default=None,
                description="When the outcome was observed (ISO 8601; no timezone: UTC). "
                "Default: now.",
            ),
        ),
    )

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
    examples = _examples(rule)
    example: Any = {
        "actuals": [
            {"request_id": "3f2a9c", "actual": examples[0], "observed_at": "2026-12-04T15:00:00Z"},
            {"request_id": "77b0e1", "actual": examples[1]},
        ]
    }

    class FeedbackRequest(RootModel[body]):
        model_config = ConfigDict(json_schema_extra={"example": example})

    return FeedbackRequest


def _examples(rule: ActualRule) -> tuple[Any, Any]:
    """Two valid actuals for the OpenAPI example."""
    if rule.task == "regression":
        assert rule.low is not None and rule.high is not None
        mid = (rule.low + rule.high) / 2  # the training target's mid-range
        # Half of it reads well (sales: 60 and 30) but falls outside the bound for a target far
        # from zero for its span (a year): then about the training target's max.
        second = mid / 2
        if not rule.low <= second <= rule.high:
            second = mid + (rule.high - mid) / (2 * SPAN_MULTIPLE + 1)
        return round(mid, 1), round(second, 1)
    if rule.classes:
        return rule.classes[0], rule.classes[-1]
    return "a class", "another class"


def items(body: Any) -> list[Any]:
    """The actuals of a validated body (one, or a batch)."""
    return list(body.actuals) if hasattr(body, "actuals") else [body]


class FeedbackAccepted(BaseModel):
    accepted: int = Field(description="Actuals written to the actuals log.")
