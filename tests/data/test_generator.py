import pandas as pd

from models.sales.data import generate


def test_generator_is_deterministic_for_a_seed():
    pd.testing.assert_frame_equal(generate(seed=7, days=30), generate(seed=7, days=30))


def test_generator_differs_across_seeds():
    assert not generate(seed=1, days=30).equals(generate(seed=2, days=30))


def test_default_data_covers_two_years_of_daily_sales(sales_raw):
    span = sales_raw["date"].max() - sales_raw["date"].min()
    assert span.days == 729
    assert sales_raw.groupby("date").size().nunique() == 1  # every item every day


def test_default_data_contains_returns_for_the_pipeline_to_drop(sales_raw, sales_clean):
    assert (sales_raw["unit_sales"] < 0).sum() > 0
    assert (sales_clean["unit_sales"] >= 0).all()


def test_promotions_and_weekends_lift_sales_in_the_data(sales_clean):
    by_promo = sales_clean.groupby("onpromotion")["unit_sales"].mean()
    assert by_promo[True] > 1.3 * by_promo[False]
    weekend = sales_clean["date"].dt.day_of_week >= 5
    assert sales_clean[weekend]["unit_sales"].mean() > sales_clean[~weekend]["unit_sales"].mean()
