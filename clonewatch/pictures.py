"""One self-contained HTML file per question an analyst asks of the store: a client, a campaign,
the riskiest clients. Charts are Plotly figures with plotly.js embedded, so the file opens
offline and can be mailed or attached to a ticket.

Risk is drawn on a "nines" axis (0.9, 0.99, 0.999 ...): the thresholds sit at 0.9995 and
above, where a linear axis shows nothing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from detectors.policy import PolicyConfig
from schemas import Action
from sinks.clickhouse import ClickHouseStore

ACTION_COLORS = {"allow": "#2e7d32", "throttle": "#f9a825", "challenge": "#ef6c00", "deny": "#c62828"}
MAX_NINES = 7.0
AGE_BUCKET = 25  # events: clients are compared with never-flagged clients of about the same age
_NEVER_FLAGGED = "client_id NOT IN (SELECT client_id FROM {db}.decisions WHERE action != 'allow')"


class ReportError(ValueError):
    """There is nothing to draw (an unknown client or campaign, an empty store)."""


def nines(risk) -> np.ndarray:
    """-log10(1 - risk): 0.9 -> 1, 0.999 -> 3, capped at :data:`MAX_NINES`.

    >>> nines([0.9, 0.999, 1.0]).round(3).tolist()
    [1.0, 3.0, 7.0]
    """
    return np.minimum(-np.log10(np.maximum(1.0 - np.asarray(risk, dtype=np.float64), 10.0**-MAX_NINES)), MAX_NINES)


@dataclass
class Section:
    title: str
    figures: list[go.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # HTML-escaped already
    table: tuple[list[str], list[tuple]] | None = None


def client_section(store: ClickHouseStore, client_id: str, policy: PolicyConfig) -> Section:
    db, p = store.database, {"client": client_id}
    _, scores = store.query(
        f"SELECT ts, events_seen, risk, action, features['coverage_ratio'], mapContains(features, 'coverage_ratio') FROM {db}.risk_scores FINAL"
        " WHERE client_id = {client:String} ORDER BY ts, events_seen", p,
    )  # fmt: skip
    if not scores:
        raise ReportError(f"no risk scores for client {client_id!r} in {store.location}")
    _, decisions = store.query(f"SELECT ts, events_seen, risk, action, reasons FROM {db}.decisions FINAL WHERE client_id = {{client:String}} ORDER BY ts", p)
    _, latest = store.query(f"SELECT action, risk, reasons, action_reasons, campaign_id FROM {db}.client_risk_latest WHERE client_id = {{client:String}}", p)
    _, envelope = store.query(
        f"SELECT intDiv(events_seen, {AGE_BUCKET}) * {AGE_BUCKET} AS age, quantile(0.5)(features['coverage_ratio']), quantile(0.9)(features['coverage_ratio'])"
        f" FROM {db}.risk_scores FINAL WHERE mapContains(features, 'coverage_ratio') AND {_NEVER_FLAGGED.format(db=db)} GROUP BY age ORDER BY age"
    )  # fmt: skip
    _, volume = store.query(
        f"SELECT toStartOfTenMinutes(ts) AS t, count() FROM {db}.access_events FINAL WHERE client_id = {{client:String}} GROUP BY t ORDER BY t", p
    )

    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.09, subplot_titles=(
        "risk after each batch, on a nines axis, with the policy's thresholds",
        "input-space coverage vs benign clients of the same age (never-flagged median and 90th percentile)",
        "requests per 10 minutes, and decisions",
    ))  # fmt: skip
    # Scores are kept once per batch; decisions add the risk at the events that changed the action.
    path = sorted({(s[1], s[2]) for s in scores} | {(d[1], d[2]) for d in decisions})
    seen = [p[0] for p in path]
    fig.add_trace(go.Scatter(x=seen, y=nines([p[1] for p in path]), mode="lines+markers", name="risk", line={"color": "#1565c0"}), row=1, col=1)
    _thresholds(fig, policy, row=1)
    for action in ("throttle", "challenge", "deny", "allow"):
        mine = [d for d in decisions if d[3] == action]
        if mine:
            fig.add_trace(go.Scatter(x=[d[1] for d in mine], y=nines([d[2] for d in mine]), mode="markers", name=f"→ {action}",
                                     marker={"color": ACTION_COLORS[action], "size": 12, "symbol": "diamond"}), row=1, col=1)  # fmt: skip
    covered = [s for s in scores if s[5]]
    if covered:
        fig.add_trace(go.Scatter(x=[s[1] for s in covered], y=[s[4] for s in covered], mode="lines+markers", name="coverage", line={"color": "#6a1b9a"}), row=2, col=1)
    if envelope:
        ages = [e[0] + AGE_BUCKET / 2 for e in envelope]
        fig.add_trace(go.Scatter(x=ages, y=[e[2] for e in envelope], mode="lines", name="benign p90", line={"color": "#9e9e9e", "dash": "dash"}), row=2, col=1)
        fig.add_trace(go.Scatter(x=ages, y=[e[1] for e in envelope], mode="lines", name="benign median", line={"color": "#bdbdbd"}), row=2, col=1)
    if volume:
        fig.add_trace(go.Bar(x=[v[0] for v in volume], y=[v[1] for v in volume], name="requests / 10 min", marker={"color": "#90caf9"}), row=3, col=1)
    for d in decisions:
        fig.add_vline(x=_ms(d[0]), line={"color": ACTION_COLORS[d[3]], "width": 2}, row=3, col=1)
    _nines_axis(fig, row=1)
    span = [0, max(seen) * 1.05]
    fig.update_xaxes(title_text="events seen", range=span, row=1, col=1)
    fig.update_xaxes(title_text="events seen", range=span, row=2, col=1)
    fig.update_layout(height=900, legend={"orientation": "h"}, margin={"t": 60})

    section = Section(f"client {client_id}", [fig])
    if latest:
        action, risk, reasons, action_reasons, campaign = latest[0]
        section.notes.append(f"now: <b>{html.escape(action)}</b> at risk {risk:.6g}" + (f", in campaign {html.escape(campaign)}" if campaign else ""))
        if action_reasons and action_reasons[0] not in reasons:
            section.notes.append("the action's own reason: " + html.escape(action_reasons[0]))
        section.notes += [html.escape(r) for r in reasons]
    section.table = (["time", "events seen", "risk", "action", "reasons"], [(str(d[0]), d[1], f"{d[2]:.6g}", d[3], "; ".join(d[4])) for d in decisions])
    return section


def campaign_section(store: ClickHouseStore, campaign_id: str, policy: PolicyConfig) -> Section:
    db, p = store.database, {"campaign": campaign_id}
    _, rows = store.query(f"SELECT ts, events_seen, risk, evidence, members, summary FROM {db}.campaigns FINAL WHERE campaign_id = {{campaign:String}} ORDER BY ts, events_seen", p)
    if not rows:
        raise ReportError(f"no campaign {campaign_id!r} in {store.location}")
    members = sorted(rows[-1][4])
    _, events = store.query(f"SELECT client_id, ts FROM {db}.access_events FINAL WHERE has({{members:Array(String)}}, client_id) ORDER BY ts", {"members": members})
    _, decisions = store.query(
        f"SELECT client_id, ts, action FROM {db}.decisions FINAL WHERE has({{members:Array(String)}}, client_id) ORDER BY ts", {"members": members}
    )
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.12, row_heights=[0.35, 0.65], subplot_titles=(
        "the campaign's risk (its merged stream and its members' evidence), on a nines axis",
        "its keys on one timeline: each dot a request, each diamond a decision",
    ))  # fmt: skip
    times = [r[0] for r in rows]
    fig.add_trace(go.Scatter(x=times, y=nines([r[2] for r in rows]), mode="lines+markers", name="campaign risk", line={"color": "#1565c0"}), row=1, col=1)
    _thresholds(fig, policy, row=1)
    fig.add_trace(go.Scatter(x=[e[1] for e in events], y=[e[0] for e in events], mode="markers", name="requests",
                               marker={"size": 4, "color": "#78909c"}), row=2, col=1)  # fmt: skip
    for action in ("throttle", "challenge", "deny", "allow"):
        mine = [d for d in decisions if d[2] == action]
        if mine:
            fig.add_trace(go.Scatter(x=[d[1] for d in mine], y=[d[0] for d in mine], mode="markers", name=f"→ {action}",
                                     marker={"color": ACTION_COLORS[action], "size": 11, "symbol": "diamond"}), row=2, col=1)  # fmt: skip
    _nines_axis(fig, row=1)
    fig.update_yaxes(categoryorder="array", categoryarray=members, row=2, col=1)
    fig.update_layout(height=max(600, 260 + 22 * len(members)), legend={"orientation": "h"}, margin={"t": 60})
    section = Section(f"campaign {campaign_id}", [fig])
    section.notes.append(html.escape(rows[-1][5]))
    section.notes.append(f"{len(members)} keys, {len(events):,} requests, peak risk {max(r[2] for r in rows):.6g}, evidence {rows[-1][3]:.3g} to 1")
    return section


def top_section(store: ClickHouseStore, n: int, policy: PolicyConfig) -> Section:
    db = store.database
    _, top = store.query(
        f"SELECT client_id, action, risk, events_seen, reasons[1] FROM {db}.client_risk_latest"
        " ORDER BY indexOf(['allow', 'throttle', 'challenge', 'deny'], action) DESC, risk DESC, client_id LIMIT {n:UInt32}", {"n": n},
    )  # fmt: skip
    if not top:
        raise ReportError(f"no clients in {store.location}")
    ids = [t[0] for t in top]
    _, paths = store.query(f"SELECT client_id, events_seen, risk FROM {db}.risk_scores FINAL WHERE has({{ids:Array(String)}}, client_id) ORDER BY events_seen", {"ids": ids})
    bars = go.Figure(go.Bar(
        x=nines([t[2] for t in top]), y=ids, orientation="h", marker={"color": [ACTION_COLORS.get(t[1], "#000") for t in top]},
        text=[f"{t[1]} · {t[2]:.6g} · {t[3]} events" for t in top], hovertext=[t[4] for t in top],
    ))  # fmt: skip
    for action in ("throttle", "challenge", "deny"):
        bars.add_vline(x=float(nines(policy.threshold(Action(action)))), line={"color": ACTION_COLORS[action], "dash": "dot"})
    bars.update_yaxes(autorange="reversed")
    bars.update_xaxes(tickvals=list(range(int(MAX_NINES) + 1)), ticktext=_nines_labels(), title_text="current risk")
    bars.update_layout(title=f"the {len(top)} riskiest clients now (colour: action)", height=max(400, 120 + 26 * len(top)))
    lines = go.Figure()
    for cid in ids:
        mine = [r for r in paths if r[0] == cid]
        lines.add_trace(go.Scatter(x=[r[1] for r in mine], y=nines([r[2] for r in mine]), mode="lines", name=cid))
    _thresholds(lines, policy)
    lines.update_yaxes(tickvals=list(range(int(MAX_NINES) + 1)), ticktext=_nines_labels(), title_text="risk")
    lines.update_layout(title="their risk over their events", xaxis_title="events seen", height=500)
    section = Section(f"top {len(top)} clients", [bars, lines])
    section.table = (["client", "action", "risk", "events", "top reason"], [(t[0], t[1], f"{t[2]:.6g}", t[3], t[4]) for t in top])
    return section


def render(sections: list[Section], store: ClickHouseStore) -> str:
    """The whole page: plotly.js once, then each section's notes, figures and table."""
    body = []
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.notes:
            body.append("<ul>" + "".join(f"<li>{note}</li>" for note in section.notes) + "</ul>")
        body += [fig.to_html(full_html=False, include_plotlyjs=False) for fig in section.figures]
        if section.table and section.table[1]:
            head, rows = section.table
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows) + "</table>")  # fmt: skip
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>clonewatch report</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:4px 8px;font-size:90%;text-align:left}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>clonewatch report</h1><p>store {html.escape(store.location)}, generated {generated}</p>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def _thresholds(fig: go.Figure, policy: PolicyConfig, row: int | None = None) -> None:
    for action in ("throttle", "challenge", "deny"):
        level = float(nines(policy.threshold(Action(action))))
        kwargs = {"row": row, "col": 1} if row is not None else {}
        fig.add_hline(y=level, line={"color": ACTION_COLORS[action], "dash": "dot"}, annotation_text=action, annotation_position="top left", **kwargs)


def _nines_axis(fig: go.Figure, row: int) -> None:
    fig.update_yaxes(range=[0, MAX_NINES + 0.3], tickvals=list(range(int(MAX_NINES) + 1)), ticktext=_nines_labels(), row=row, col=1)


def _nines_labels() -> list[str]:
    return ["0"] + [f"0.{'9' * k}" for k in range(1, int(MAX_NINES))] + ["1"]


def _ms(ts: datetime) -> float:
    """Plotly wants a number for a vertical line on a date axis: milliseconds since the epoch."""
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return ts.timestamp() * 1000.0
