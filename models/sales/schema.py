"""Data contract of the sales model: columns, ranges, categories; which are features."""

from models.contract import Column, FeatureSchema
from models.sales.data import FAMILIES

SCHEMA = FeatureSchema(
    columns=(
        Column(
            name="date",
            kind="date",
            description="Day of the sale (ISO 8601).",
            example="2017-08-01",
        ),
        Column(
            name="item_nbr",
            kind="category",
            description="Item identifier; only items the model was trained on are accepted.",
            categories=None,
        ),
        Column(
            name="family",
            kind="category",
            description="Item family.",
            categories=tuple(FAMILIES),
            example="GROCERY I",
        ),
        Column(
            name="class",
            kind="int",
            description="Item class code.",
            minimum=0,
            maximum=99_999,
            example=1003,
        ),
        Column(
            name="perishable",
            kind="bool",
            description="Perishable items weigh 1.25 in NWRMSLE.",
            example=False,
        ),
        Column(
            name="onpromotion", kind="bool", description="Item on promotion that day.", example=True
        ),
        Column(name="holiday", kind="bool", description="National holiday.", example=False),
        Column(
            name="payday",
            kind="bool",
            description="Public-sector payday (15th and last day of the month).",
            example=False,
        ),
        # Known only after the day ends, so it is not a feature of a forecast.
        Column(
            name="transactions", kind="int", description="Store transactions that day.", minimum=0
        ),
        # Negative rows are returns: allowed in the raw data, dropped by clean().
        Column(
            name="unit_sales",
            kind="float",
            description="Units sold (target).",
            minimum=-1e6,
            maximum=1e6,
        ),
    ),
    features=(
        "date",
        "item_nbr",
        "family",
        "class",
        "perishable",
        "onpromotion",
        "holiday",
        "payday",
    ),
    target="unit_sales",
    time_column="date",
)
