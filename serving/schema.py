"""Request and response models derived from a model's fitted feature schema.

Strict by construction: no type coercion, no NaN or infinity, unknown fields rejected, ranges and
categories enforced, null only in a column the schema marks nullable (the field is still required:
a misspelt name is refused, not read as missing). The OpenAPI document carries a valid example
built from the same schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from models.contract import Column, FeatureSchema

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


# The dates pandas can hold (nanosecond timestamps): a model's preprocessing reads dates with it,
# so a date past them (9999-12-31, a common "no end" sentinel) is refused here, not a 500 there.
FIRST_DATE, LAST_DATE = dt.date(1677, 9, 22), dt.date(2262, 4, 11)


def field_type(col: Column) -> Any:
    """The type a record's field must have: the API's rules for one column (batch scoring checks
    a file's columns with the same types, batch/columnar.py); null too where it is nullable."""
    kind = _value_type(col)
    return kind | None if col.nullable else kind


def of_their_kind(values: tuple[Any, ...]) -> BeforeValidator:
    """A value sent as the JSON type of `values`: a Literal alone takes true and 1.0 for 1
    (True == 1 == 1.0 in Python), and the model would get a value nobody sent."""
    kinds = {type(v) for v in values}

    def check(v: Any) -> Any:
        if type(v) not in kinds:
            raise PydanticCustomError("literal_error", "not one of the values")
        return v

    return BeforeValidator(check)


def _value_type(col: Column) -> Any:
    if col.kind == "category" and col.categories:
        choices: Any = Literal[tuple(col.categories)]
        if all(isinstance(c, str) for c in col.categories):
            return choices  # text equals no number: no check per record needed
        return Annotated[choices, of_their_kind(tuple(col.categories))]
    if col.kind == "category":
        return str
    if col.kind == "int":
        lo, hi = (None if b is None else int(b) for b in (col.minimum, col.maximum))
        return _bounded(int, lo, hi)
    if col.kind == "float":
        return _bounded(float, col.minimum, col.maximum)
    if col.kind == "bool":
        return bool
    return _bounded(dt.date, FIRST_DATE, LAST_DATE)


def _bounded(kind: type, lo: Any, hi: Any) -> Any:
    """`kind` within [lo, hi] (a bound of None is no bound), as the constraints themselves (a
    Field's metadata), not a Field: they stay readable inside `kind | None`, for the error words."""
    bounds = Field(ge=lo, le=hi).metadata
    return Annotated[(kind, *bounds)] if bounds else kind


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
