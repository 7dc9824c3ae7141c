"""Altair charts: convergence curves with a shaded seed band (``st.line_chart`` cannot draw bands)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from dashboard.tables import method_key

# none in grey (the baseline), the averaging methods in strong colours; unknown methods get Tableau's.
METHOD_COLORS = {"none": "#7f7f7f", "ema": "#1f77b4", "sema": "#d62728"}
_EXTRA = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def _color(methods: list[str]) -> alt.Color:
    extra = iter(_EXTRA * 4)
    colors = [METHOD_COLORS.get(m) or next(extra) for m in methods]
    return alt.Color("method:N", scale=alt.Scale(domain=methods, range=colors), sort=methods,
                     legend=alt.Legend(title="method", orient="top", symbolOpacity=1.0))


def curve_chart(summary: pd.DataFrame, points: pd.DataFrame | None, x_title: str, y_title: str,
                counts: bool = True) -> alt.LayerChart:
    """Seed-mean line per method over a band of mean +- 1 std; ``points`` adds the individual seed lines.
    ``counts``: the x axis counts epochs or iterations (integer ticks), rather than seconds."""
    methods = sorted(summary["method"].unique(), key=method_key)
    color = _color(methods)
    x = alt.X("x:Q", title=x_title, axis=alt.Axis(tickMinStep=1) if counts else alt.Axis())
    base = alt.Chart(summary)
    band = base.mark_area(opacity=0.18).encode(x=x, y=alt.Y("lo:Q", title=y_title, scale=alt.Scale(zero=False)),
                                               y2="hi:Q", color=color)
    line = base.mark_line(point=True, strokeWidth=2.5).encode(
        x=x, y="mean:Q", color=color,
        tooltip=["method:N", alt.Tooltip("x:Q", title=x_title, format=".4g"),
                 alt.Tooltip("mean:Q", format=".4g"), alt.Tooltip("std:Q", format=".3g"),
                 alt.Tooltip("n:Q", title="seeds")])
    layers: list[alt.Chart] = [band, line]
    if points is not None:
        layers.append(alt.Chart(points).mark_line(strokeWidth=1, opacity=0.55, strokeDash=[4, 3]).encode(
            x=x, y="value:Q", color=color, detail="job_id:N",
            tooltip=["method:N", "seed:Q", "job_id:N", alt.Tooltip("value:Q", format=".4g")]))
    return alt.layer(*layers).properties(height=380).interactive(bind_y=False)
