"""Real series that ship inside statsmodels (no network): one loader with a common interface.

`load(name) -> list[np.ndarray]` gives a set of float series; `windows` cuts input/horizon pairs and
`split_by_time` keeps the last fraction of every series for testing.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["SETS", "load", "split_by_time", "windows"]

# name -> (domain, description)
SETS = {
    "sunspots": ("astronomy", "yearly sunspot activity, 1700-2008"),
    "co2": ("climate", "weekly Mauna Loa CO2 (ppm), 1958-2001, gaps interpolated"),
    "nile": ("hydrology", "yearly Nile flow volume at Aswan, 1871-1970"),
    "elnino": ("climate", "monthly sea-surface temperature (El Niño), 1950-2010"),
    "macrodata": ("economics", "US quarterly real GDP, CPI, unemployment, inflation, 1959-2009"),
    "interest_inflation": ("finance", "German quarterly inflation and interest rate, 1972-1998"),
    "fertility": ("demography", "yearly fertility rate of 40 countries, 1960-2013"),
}


def _frame(name: str):
    import statsmodels.api as sm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(sm.datasets, name).load_pandas().data


def load(name: str) -> list[np.ndarray]:
    """A set of series (float64 arrays) from the named statsmodels dataset."""
    if name not in SETS:
        raise ValueError(f"name must be one of {sorted(SETS)}, got {name!r}")
    df = _frame(name)
    if name == "sunspots":
        return [df["SUNACTIVITY"].to_numpy(float)]
    if name == "co2":
        return [df["co2"].interpolate(limit_direction="both").to_numpy(float)]
    if name == "nile":
        return [df["volume"].to_numpy(float)]
    if name == "elnino":
        return [df.drop(columns="YEAR").to_numpy(float).ravel()]
    if name == "macrodata":
        return [df[c].to_numpy(float) for c in ("realgdp", "cpi", "unemp", "infl")]
    if name == "interest_inflation":
        return [df[c].to_numpy(float) for c in ("Dp", "R")]
    years = df[[c for c in df.columns if c.isdigit()]].dropna(axis=1, how="all")
    rows = years.dropna().to_numpy(float)
    return list(rows[:40])


def split_by_time(series: list[np.ndarray], test_fraction: float = 0.2) -> tuple[list, list]:
    """(train, test): the first 1 - test_fraction of every series, and the rest."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    cut = [int(round(len(s) * (1 - test_fraction))) for s in series]
    return [s[:c] for s, c in zip(series, cut)], [s[c:] for s, c in zip(series, cut)]


def windows(series: list[np.ndarray], input_len: int, horizon: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All (input, target) windows: [m, input_len] and [m, horizon]."""
    xs, ys = [], []
    for s in series:
        for start in range(0, len(s) - input_len - horizon + 1, stride):
            xs.append(s[start:start + input_len])
            ys.append(s[start + input_len:start + input_len + horizon])
    if not xs:
        raise ValueError(f"no series is longer than input_len + horizon = {input_len + horizon}")
    return np.stack(xs), np.stack(ys)
