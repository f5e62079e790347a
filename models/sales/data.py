"""Deterministic generator of Favorita-like daily unit sales for one store.

Shaped after the Favorita data the CD4ML workshop used: items in families and classes, perishable
items, promotions, national holidays and paydays (the 15th and the last day of the month), store
transactions, weekly and yearly seasonality, and a few negative rows (returns) that the pipeline
drops, as the workshop's EDA did.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# family -> perishable
FAMILIES: dict[str, bool] = {
    "GROCERY I": False,
    "BEVERAGES": False,
    "CLEANING": False,
    "PERSONAL CARE": False,
    "DAIRY": True,
    "BREAD/BAKERY": True,
    "PRODUCE": True,
    "POULTRY": True,
    "MEATS": True,
    "DELI": True,
}
# Ecuadorian national holidays with fixed dates (month, day).
HOLIDAYS = [(1, 1), (5, 1), (5, 24), (8, 10), (10, 9), (11, 2), (11, 3), (12, 25)]
WEEKDAY_EFFECT = np.array([0.90, 0.85, 0.88, 0.92, 1.05, 1.30, 1.25])  # Monday..Sunday
RETURN_RATE = 0.003


def holiday_flags(dates: pd.DatetimeIndex) -> np.ndarray:
    md = list(zip(dates.month, dates.day, strict=True))
    return np.array([x in HOLIDAYS for x in md])


def payday_flags(dates: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray((dates.day == 15) | dates.is_month_end)


def generate(
    seed: int = 42, start: str = "2015-08-01", days: int = 730, n_items: int = 60
) -> pd.DataFrame:
    """Return `days` x `n_items` rows of daily sales; the same seed always gives the same frame."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    families = list(FAMILIES)

    item_family = rng.choice(len(families), size=n_items)
    item_nbr = np.sort(rng.choice(np.arange(100_000, 999_999), size=n_items, replace=False))
    item_class = 1000 + item_family * 100 + rng.integers(0, 4, size=n_items)
    item_base = rng.lognormal(mean=1.6, sigma=0.7, size=n_items)  # mean daily units per item
    item_promo_lift = rng.uniform(1.2, 2.0, size=n_items)

    holiday = holiday_flags(dates)
    payday = payday_flags(dates)
    doy = dates.day_of_year.to_numpy()
    yearly = 1.0 + 0.15 * np.sin(2 * np.pi * (doy - 80) / 365.25) + 0.25 * (dates.month == 12)
    trend = 1.0 + 0.10 * np.arange(days) / days
    day_effect = (
        WEEKDAY_EFFECT[dates.day_of_week] * yearly * trend * (1.35 * holiday + 1.0 * ~holiday)
    )
    day_effect *= np.where(payday, 1.12, 1.0)

    transactions = np.round(1500 * day_effect * rng.lognormal(0, 0.05, size=days)).astype(int)

    # Every (date, item) pair: dates vary slowest.
    d_idx = np.repeat(np.arange(days), n_items)
    i_idx = np.tile(np.arange(n_items), days)
    n = days * n_items
    onpromotion = rng.random(n) < 0.08
    mean = item_base[i_idx] * day_effect[d_idx] * np.where(onpromotion, item_promo_lift[i_idx], 1.0)
    units = rng.poisson(mean * rng.lognormal(0, 0.25, size=n)).astype(float)
    perishable = np.array([FAMILIES[families[f]] for f in item_family])[i_idx]
    # Perishables are often sold by weight: fractional units.
    units = np.where(perishable, np.round(units * rng.uniform(0.9, 1.1, size=n), 3), units)
    returns = rng.random(n) < RETURN_RATE
    units = np.where(returns, -rng.integers(1, 5, size=n).astype(float), units)

    return pd.DataFrame(
        {
            "date": dates[d_idx],
            "item_nbr": item_nbr[i_idx],
            "family": np.array(families)[item_family][i_idx],
            "class": item_class[i_idx],
            "perishable": perishable,
            "onpromotion": onpromotion,
            "holiday": holiday[d_idx],
            "payday": payday[d_idx],
            "transactions": transactions[d_idx],
            "unit_sales": units,
        }
    )
