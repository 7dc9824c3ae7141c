"""Altair charts: convergence curves with a shaded seed band (``st.line_chart`` cannot draw bands), the
performance profile, and the sensitivity of a metric to each swept knob."""

from __future__ import annotations

import altair as alt
import pandas as pd

from sema_dashboard.tables import method_key, series_key

# none in grey (the baseline), the averaging methods in strong colours; unknown methods and variants other
# than the shipped one get Tableau's.
METHOD_COLORS = {"none": "#7f7f7f", "ema": "#1f77b4", "sema": "#d62728", "swa": "#2ca02c", "lookahead": "#9467bd"}
_EXTRA = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e", "#aec7e8"]


def _palette(shipped: list[bool], methods: list[str]) -> list[str]:
    """A method's own colour for its shipped series, the next spare colour for every other."""
    extra = iter(_EXTRA * (1 + len(methods) // len(_EXTRA)))
    return [METHOD_COLORS[m] if own and m in METHOD_COLORS else next(extra)
            for m, own in zip(methods, shipped)]


def _color(field: str, title: str, names: list[str], colors: list[str]) -> alt.Color:
    return alt.Color(f"{field}:N", scale=alt.Scale(domain=names, range=colors), sort=names,
                     legend=alt.Legend(title=title, orient="top", symbolOpacity=1.0, labelLimit=400))


def curve_chart(summary: pd.DataFrame, points: pd.DataFrame | None, x_title: str, y_title: str,
                counts: bool = True) -> alt.LayerChart:
    """Seed-mean line per series (method and variant) over a band of mean +- 1 std; ``points`` adds the
    individual seed lines. ``counts``: the x axis counts epochs or iterations (integer ticks), not seconds."""
    series = summary[["series", "method", "variant"]].drop_duplicates()
    series = sorted(series.itertuples(index=False), key=lambda s: series_key(s.method, s.variant))
    names = [s.series for s in series]
    color = _color("series", "method · variant", names,
                   _palette([not s.variant for s in series], [s.method for s in series]))
    x = alt.X("x:Q", title=x_title, axis=alt.Axis(tickMinStep=1) if counts else alt.Axis())
    base = alt.Chart(summary)
    band = base.mark_area(opacity=0.18).encode(x=x, y=alt.Y("lo:Q", title=y_title, scale=alt.Scale(zero=False)),
                                               y2="hi:Q", color=color)
    line = base.mark_line(point=True, strokeWidth=2.5).encode(
        x=x, y="mean:Q", color=color,
        tooltip=["method:N", "variant:N", alt.Tooltip("x:Q", title=x_title, format=".4g"),
                 alt.Tooltip("mean:Q", format=".4g"), alt.Tooltip("std:Q", format=".3g"),
                 alt.Tooltip("n:Q", title="seeds")])
    layers: list[alt.Chart] = [band, line]
    if points is not None:
        layers.append(alt.Chart(points).mark_line(strokeWidth=1, opacity=0.55, strokeDash=[4, 3]).encode(
            x=x, y="value:Q", color=color, detail="job_id:N",
            tooltip=["method:N", "variant:N", "seed:Q", "job_id:N", alt.Tooltip("value:Q", format=".4g")]))
    return alt.layer(*layers).properties(height=380).interactive(bind_y=False)


def profile_chart(frame: pd.DataFrame) -> alt.Chart:
    """Performance profiles: one step line per method, fraction of problems (y) within tau of the best (x)."""
    methods = sorted(frame["method"].unique(), key=method_key)
    color = _color("method", "method", methods, _palette([True] * len(methods), methods))
    return alt.Chart(frame).mark_line(interpolate="step-after", strokeWidth=2.5).encode(
        x=alt.X("tau:Q", title="τ: relative gap to the best method", axis=alt.Axis(format="%")),
        y=alt.Y("fraction:Q", title="task-presets within τ", axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1])),
        color=color,
        tooltip=["method:N", alt.Tooltip("tau:Q", title="τ", format=".2%"),
                 alt.Tooltip("fraction:Q", format=".0%")],
    ).properties(height=320)


def sensitivity_chart(points: pd.DataFrame, knob: str, y_title: str, reference: float | None) -> alt.LayerChart:
    """One knob's sweep: the metric's final mean (+- 1 std over seeds) at each value, one line per method (and
    setting of the other knobs); ``reference`` (``none`` as shipped) is a dashed horizontal rule."""
    lines = points[["line", "method", "others"]].drop_duplicates()
    lines = sorted(lines.itertuples(index=False), key=lambda s: series_key(s.method, s.others))
    names = [s.line for s in lines]
    color = _color("line", "method", names,
                   _palette([not s.others for s in lines], [s.method for s in lines]))
    x = alt.X("value:O", title=knob, sort=alt.EncodingSortField(field="order", op="min"),
              axis=alt.Axis(labelAngle=0))
    base = alt.Chart(points)
    bars = base.mark_rule(strokeWidth=1.5).encode(x=x, y=alt.Y("lo:Q", title=y_title, scale=alt.Scale(zero=False)),
                                                  y2="hi:Q", color=color)
    line = base.mark_line(point=alt.OverlayMarkDef(size=60), strokeWidth=2.5).encode(
        x=x, y="mean:Q", color=color,
        tooltip=["method:N", "variant:N", alt.Tooltip("mean:Q", format=".4g"), alt.Tooltip("std:Q", format=".3g"),
                 alt.Tooltip("seeds:Q")])
    layers: list[alt.Chart] = [bars, line]
    if reference is not None:
        rule = pd.DataFrame({"none": [reference], "label": ["none (as shipped)"]})
        layers.append(alt.Chart(rule).mark_rule(color=METHOD_COLORS["none"], strokeDash=[6, 4], strokeWidth=2)
                      .encode(y="none:Q", tooltip=["label:N", alt.Tooltip("none:Q", format=".4g")]))
    return alt.layer(*layers).properties(height=300, title=f"{y_title} against {knob}")


def scatter_chart(points: pd.DataFrame, x_title: str, y_title: str) -> alt.Chart:
    """One point per job (x: a flatness measure, y: a metric), coloured by method and variant."""
    series = points[["series", "method", "variant"]].drop_duplicates()
    series = sorted(series.itertuples(index=False), key=lambda s: series_key(s.method, s.variant))
    names = [s.series for s in series]
    color = _color("series", "method · variant", names,
                   _palette([s.variant == "shipped" for s in series], [s.method for s in series]))
    return alt.Chart(points).mark_point(size=80, filled=True, opacity=0.8).encode(
        x=alt.X("x:Q", title=x_title, scale=alt.Scale(zero=False)),
        y=alt.Y("y:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=color,
        tooltip=["job_id:N", "method:N", "variant:N", "seed:Q", alt.Tooltip("x:Q", title=x_title, format=".4g"),
                 alt.Tooltip("y:Q", title=y_title, format=".4g")],
    ).properties(height=360).interactive()
