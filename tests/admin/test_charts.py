"""The dashboard's chart geometry: pure functions, checked without a database."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.admin.charts import horizontal_bars, nice_ceiling, series_colors, stacked_columns


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 1), (1, 1), (1.2, 2), (3, 5), (7, 10), (2400, 2500), (99_000, 100_000), (0.0031, 0.005)],
)
def test_the_axis_top_is_a_round_number_at_least_the_peak(value, expected):
    assert nice_ceiling(value) == pytest.approx(expected)


def _chart(values, days=3):
    day_list = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(days)]
    series = ["a", "b"]
    return day_list, stacked_columns(
        categories=day_list,
        category_labels=[d.isoformat() for d in day_list],
        series=series,
        values={(day_list[d], s): v for (d, s), v in values.items()},
        colors=series_colors(series),
        fmt=str,
    )


def test_columns_stack_bottom_up_in_series_order_and_scale_to_the_axis():
    _, chart = _chart({(0, "a"): 30, (0, "b"): 10, (2, "b"): 50})
    a0, b0, b2 = chart.rects
    plot = chart.plot_bottom - chart.plot_top
    # The axis tops at 50: day 2's 50 fills the plot, day 0's 30 + 10 fill 80 % of it.
    assert b2.height == pytest.approx(plot, abs=0.01)
    assert a0.height == pytest.approx(plot * 30 / 50, abs=0.01)
    assert a0.y + a0.height == pytest.approx(chart.plot_bottom, abs=0.01)  # a sits on the axis
    assert b0.y + b0.height == pytest.approx(a0.y, abs=0.01)  # b sits on a
    assert a0.fill != b0.fill
    assert a0.x == b0.x < b2.x
    assert "2025-01-01 · a: 30" == a0.title
    assert [t.label for t in chart.y_ticks] == ["0", "12.5", "25", "37.5", "50"]


def test_zero_values_draw_nothing():
    _, chart = _chart({})
    assert chart.is_empty
    assert chart.rects == []


@given(st.lists(st.tuples(st.integers(0, 29), st.sampled_from("ab"), st.integers(0, 10**9)), max_size=60))
def test_no_column_ever_leaves_the_plot(entries):
    values = {}
    for day, name, v in entries:
        values[(day, name)] = v
    _, chart = _chart(values, days=30)
    for rect in chart.rects:
        assert rect.height > 0
        assert chart.plot_top - 0.05 <= rect.y
        assert rect.y + rect.height <= chart.plot_bottom + 0.05
        assert chart.plot_left <= rect.x and rect.x + rect.width <= chart.plot_right + 0.05


def test_horizontal_bars_are_proportional_to_the_largest():
    chart = horizontal_bars(rows=[("alice", Decimal("4")), ("bob", Decimal("1"))], fmt=lambda v: f"${v}")
    alice, bob = chart.rows
    assert alice.rect.width == pytest.approx(4 * bob.rect.width)
    assert alice.rect.width == pytest.approx(chart.plot_right - chart.plot_left)
    assert (alice.label, alice.value) == ("alice", "$4")
    assert bob.rect.y > alice.rect.y
