"""cancer: an example brought-in classifier (malignant or benign, from 30 measurements of cell
nuclei), as a data scientist would write it after `make new-model`: its data, contract, estimator
and config, and the predict path left at its defaults."""

from pathlib import Path

from models.cancer.data import load
from models.cancer.estimator import build_estimator
from models.cancer.schema import SCHEMA
from models.contract import ModelSpec

SPEC = ModelSpec(
    name="cancer",
    task="classification",
    schema=SCHEMA,
    build_estimator=build_estimator,
    default_data=load,
    config_path=Path(__file__).with_name("config.yaml"),
)
