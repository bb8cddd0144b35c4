"""Several objectives in the report: every trial on the first two, the Pareto front drawn through its
trials, the published one marked (read from the leaderboard frame, so an old sweep's report has it)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ktsweep.core.pareto import Objective


def front_figure(frame: pd.DataFrame, objectives: list[Objective], objective_column: str, best: str) -> Any:
    """A scatter of the trials on the first two objectives (a third, if any, as the colour), the front as
    a line in the order of the first objective, the published trial as a star."""
    import plotly.graph_objects as go

    from ktsweep.dashboards.leaderboard import FRONT_COLUMN

    columns = [objective_column if i == 0 else o.name for i, o in enumerate(objectives)]
    x_name, y_name = columns[0], columns[1]
    done = frame.dropna(subset=columns[:2])
    colour = dict(color=done[columns[2]], colorscale="Viridis", showscale=True,
                  colorbar=dict(title=objectives[2].name)) if len(columns) > 2 else dict(color="#9aa5b1")
    figure = go.Figure()
    figure.add_trace(go.Scatter(
        x=done[x_name], y=done[y_name], mode="markers", name="trial", marker=dict(size=8, **colour),
        text=[f"trial {t}" for t in done["trial"]], hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>",
    ))
    front = done[done[FRONT_COLUMN] == "yes"].sort_values(x_name)
    figure.add_trace(go.Scatter(x=front[x_name], y=front[y_name], mode="lines+markers", name="Pareto front",
                                line=dict(shape="hv" if len(columns) == 2 else "linear", color="#d62728"),
                                marker=dict(size=10, color="#d62728"), text=[f"trial {t}" for t in front["trial"]],
                                hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    chosen = done[done["trial"] == best]
    if len(chosen):
        figure.add_trace(go.Scatter(x=chosen[x_name], y=chosen[y_name], mode="markers", name=f"published (trial {best})",
                                    marker=dict(symbol="star", size=18, color="#ffbf00", line=dict(width=1))))
    figure.update_layout(xaxis_title=f"{objectives[0].name} ({objectives[0].direction})",
                         yaxis_title=f"{objectives[1].name} ({objectives[1].direction})")
    return figure
