"""The output columns and their numbers (pure NumPy)."""

from __future__ import annotations

import numpy as np

from candle.predict.output import Z95, Layout, classify, format_rows, regress


def test_classifier_columns_aggregate_members_and_passes() -> None:
    samples = np.array([[[0.9, 0.1], [0.2, 0.8]],
                        [[0.7, 0.3], [0.4, 0.6]]], dtype=np.float32)  # 2 members, 2 rows
    out = classify(samples, np.array([0, 0]))
    np.testing.assert_allclose(out["prob_0"], [0.8, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(out["class"], [0, 1])
    np.testing.assert_allclose(out["std"], [0.1, 0.1], rtol=1e-5)
    np.testing.assert_allclose(out["prob_label"], [0.8, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(out["correct"], [1, 0])
    entropy = -(0.8 * np.log(0.8) + 0.2 * np.log(0.2))
    assert abs(out["entropy"][0] - entropy) < 1e-6


def test_heteroscedastic_members_mix_spread_and_sigma_in_the_unit() -> None:
    layout = Layout("regression", labelled=True, head="heteroscedastic", interval=True,
                    target="GROWTH", unit=100.0)
    outputs = [{"mean": np.array([0.1]), "sigma": np.array([0.3])},
               {"mean": np.array([0.3]), "sigma": np.array([0.4])}]
    out = regress(outputs, np.array([0.5]), layout)
    sigma = np.sqrt((0.09 + 0.16) / 2)
    total = np.hypot(0.1, sigma)
    np.testing.assert_allclose(out["mean"], [20.0])
    np.testing.assert_allclose(out["std"], [10.0])
    np.testing.assert_allclose(out["sigma"], [100 * sigma])
    np.testing.assert_allclose(out["upper_95"], [100 * (0.2 + Z95 * total)])
    np.testing.assert_allclose(out["GROWTH"], [50.0])
    np.testing.assert_array_equal(out["in_95"], [1.0])
    assert layout.columns() == ["row", "mean", "std", "sigma", "total_std", "lower_95",
                                "upper_95", "GROWTH", "abs_error", "in_95"]


def test_rows_are_csv_with_ids_first_and_missing_values_empty() -> None:
    layout = Layout("regression", labelled=True, target="GROWTH", ids=("CELLNAME",))
    values = {"mean": np.array([1.5, 2.0]), "std": np.array([0.0, 0.0]),
              "GROWTH": np.array([np.nan, 3.0]), "abs_error": np.array([np.nan, 1.0])}
    text = format_rows(layout, 10, {"CELLNAME": ["A,1", "B"]}, values, 2)
    assert text == '10,"A,1",1.5,0,,\n11,B,2,0,3,1\n'
