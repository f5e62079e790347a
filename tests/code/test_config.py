from pathlib import Path

import pytest

from models import get_spec
from models.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_default_sales_config_loads_with_its_thresholds():
    cfg = load_config(get_spec("sales").config_path)
    assert {t.metric for t in cfg.gate.parsed()} == {"nwrmsle", "r2"}


def test_config_error_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "seed: 1\ngate:\n  thresholds:\n    nwrmsle: '<= 0.8'\nsplit:\n  validation_weeks: -3\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"{path}:6: split.validation_weeks:" in str(exc.value)


def test_config_rejects_unknown_keys(tmp_path):
    path = write(tmp_path, "seed: 1\nsead: 2\ngate:\n  thresholds: {}\n")
    with pytest.raises(ConfigError, match=r":2: sead: Extra inputs are not permitted"):
        load_config(path)


def test_config_rejects_unreadable_threshold(tmp_path):
    path = write(tmp_path, "seed: 1\ngate:\n  thresholds:\n    nwrmsle: 'about 0.8'\n")
    with pytest.raises(ConfigError, match=r":4: gate.thresholds: .*cannot read threshold"):
        load_config(path)


def test_config_rejects_invalid_yaml_with_line(tmp_path):
    path = write(tmp_path, "seed: 1\ngate: [\n")
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: not valid YAML"):
        load_config(path)
