"""Request and response models derived from a model's fitted feature schema.

Strict by construction: no type coercion, no NaN or infinity, unknown fields rejected, ranges and
categories enforced. The OpenAPI document carries a valid example built from the same schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from models.contract import Column, FeatureSchema

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


# The dates pandas can hold (nanosecond timestamps): a model's preprocessing reads dates with it,
# so a date past them (9999-12-31, a common "no end" sentinel) is refused here, not a 500 there.
FIRST_DATE, LAST_DATE = dt.date(1677, 9, 22), dt.date(2262, 4, 11)


def field_type(col: Column) -> Any:
    """The type a record's field must have: the API's rules for one column (batch scoring checks
    a file's columns with the same types, batch/columnar.py)."""
    if col.kind == "category" and col.categories:
        return Literal[tuple(col.categories)]
    if col.kind == "category":
        return str
    if col.kind == "int":
        lo, hi = (None if b is None else int(b) for b in (col.minimum, col.maximum))
        return Annotated[int, Field(ge=lo, le=hi)]  # a bound of None is no bound
    if col.kind == "float":
        return Annotated[float, Field(ge=col.minimum, le=col.maximum)]
    if col.kind == "bool":
        return bool
    return Annotated[dt.date, Field(ge=FIRST_DATE, le=LAST_DATE)]


def record_model(schema: FeatureSchema) -> type[BaseModel]:
    fields: dict[str, Any] = {
        c.name: (field_type(c), Field(description=c.description or None))
        for c in schema.feature_columns
    }
    return create_model("Record", __config__=STRICT, **fields)


def request_model(schema: FeatureSchema, max_records: int) -> type[BaseModel]:
    record = record_model(schema)
    example: dict[str, Any] = {"records": [schema.example_record()]}
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(**STRICT, json_schema_extra={"example": example}),
        records=(
            list[record],  # type: ignore[valid-type]  # a class built at run time
            Field(
                min_length=1,
                max_length=max_records,
                description=f"One to {max_records} records to predict.",
            ),
        ),
    )


class RegressionResponse(BaseModel):
    model: str = Field(description="Tag of the model that answered.")
    predictions: list[float] = Field(description="One prediction per record, in request order.")


class ClassificationResponse(BaseModel):
    model: str = Field(description="Tag of the model that answered.")
    predictions: list[str | int] = Field(description="Predicted class of each record.")
    probabilities: list[dict[str, float]] = Field(
        description="Probability of each class, per record."
    )
