"""training/parameters.py: a wrong estimator parameter or a failing build_estimator is explained
with the file, line and field, before any data is read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

from models import ModelPackageError
from models.config import ConfigError
from training import parameters
from training.train import train


def config_with_params(tmp_path: Path, sales_spec, **params) -> tuple[Path, dict]:
    cfg = yaml.safe_load(sales_spec.config_path.read_text())
    cfg["params"] = params
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, params


def line_of(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if f"{key}:" in line)


def test_shipped_sales_parameters_pass_the_check(sales_spec):
    cfg = yaml.safe_load(sales_spec.config_path.read_text())
    assert parameters.check(sales_spec, cfg["params"], 42, sales_spec.config_path) is None


def test_unknown_parameter_names_config_line_and_field(tmp_path, sales_spec):
    path, params = config_with_params(tmp_path, sales_spec, max_iter=10, no_such_param=1)
    with pytest.raises(ConfigError) as exc:
        parameters.check(sales_spec, params, 42, path)
    assert str(exc.value) == (
        f"{path}:{line_of(path, 'no_such_param')}: params.no_such_param: "
        "not a parameter of HistGradientBoostingRegressor"
    )


@pytest.mark.parametrize(("value", "got"), [("lots", "got 'lots'"), (0, "got 0"), (2.5, "got 2.5")])
def test_invalid_parameter_value_names_the_rule_and_what_was_given(
    tmp_path, sales_spec, value, got
):
    path, params = config_with_params(tmp_path, sales_spec, max_iter=value)
    with pytest.raises(ConfigError) as exc:
        parameters.check(sales_spec, params, 42, path)
    message = str(exc.value)
    assert message.startswith(
        f"{path}:{line_of(path, 'max_iter')}: params.max_iter: must be an int"
    )
    assert got in message
    assert "Traceback" not in message


def test_build_estimator_that_raises_is_blamed_on_the_model_package(tmp_path, sales_spec):
    def build(params, seed):
        return params["depth"] / 0

    spec = dataclasses.replace(sales_spec, build_estimator=build)
    with pytest.raises(
        ModelPackageError, match=r"^models/sales/: .*ZeroDivisionError: division by zero"
    ):
        parameters.check(spec, {"depth": 3}, 42, sales_spec.config_path)


def test_invalid_parameter_set_in_package_code_is_blamed_on_the_package(sales_spec):
    def build(params, seed):
        return HistGradientBoostingRegressor(learning_rate=-1.0)

    spec = dataclasses.replace(sales_spec, build_estimator=build)
    with pytest.raises(ModelPackageError, match=r"parameter 'learning_rate' must be a float"):
        parameters.check(spec, {}, 42, sales_spec.config_path)


def raw_prepare(records):  # hands the estimator the text of `family` as it is
    return pd.DataFrame.from_records(records)[["family", "onpromotion"]]


def test_a_prepare_passing_text_to_the_estimator_is_blamed_on_prepare_not_the_params(
    tmp_path, sales_spec, sales_clean
):
    spec = dataclasses.replace(
        sales_spec,
        prepare=raw_prepare,
        build_estimator=lambda params, seed: RandomForestRegressor(random_state=seed, **params),
    )
    path, params = config_with_params(tmp_path, sales_spec, n_estimators=2)

    with pytest.raises(ModelPackageError) as exc:
        train(spec, sales_clean.head(50), params, 42, path)

    message = str(exc.value)
    # The prepare here is no file of the package: the package's folder is named.
    assert message.startswith(
        "models/sales/: the sales estimator cannot fit the model input its prepare returns; "
        "columns 'family' hold text: encode them inside the estimator's Pipeline"
    ), message
    assert "ValueError: could not convert string to float: " in message
    assert "params" not in message
