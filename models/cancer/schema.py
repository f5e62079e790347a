"""Data contract of the cancer model: 30 measurements of cell nuclei, the diagnosis to predict."""

from models.cancer.data import FEATURES
from models.contract import Column, FeatureSchema

# Example: the first row of the data set (a malignant tumour).
EXAMPLE = dict(
    zip(
        FEATURES,
        (
            *(17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871),
            *(1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193),
            *(25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189),
        ),
        strict=True,
    )
)

SCHEMA = FeatureSchema(
    columns=(
        *(
            Column(
                name=name,
                kind="float",
                description=f"{name.replace('_', ' ')} of the cell nuclei in the image",
                minimum=0,
                example=EXAMPLE[name],
            )
            for name in FEATURES
        ),
        Column(
            name="diagnosis",
            kind="category",
            description="malignant or benign",
            categories=("benign", "malignant"),
        ),
    ),
    features=FEATURES,
    target="diagnosis",
)
