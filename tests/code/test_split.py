import pandas as pd
import pytest

from models.config import SplitConfig
from training.split import SplitError, split, time_split


def test_time_split_holds_out_the_last_weeks(sales_clean):
    train, valid = time_split(sales_clean, "date", 8)
    assert train["date"].max() < valid["date"].min()
    assert (valid["date"].max() - valid["date"].min()).days == 8 * 7 - 1
    assert len(train) + len(valid) == len(sales_clean)


def test_time_series_refuses_a_random_split(sales_spec, sales_clean):
    with pytest.raises(SplitError, match="never a random split"):
        split(sales_clean, sales_spec, SplitConfig(validation_fraction=0.2), seed=1)


def test_time_split_reports_an_empty_side():
    df = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=10)})
    with pytest.raises(SplitError, match="empty side"):
        time_split(df, "date", 8)
