"""What a person sees at the end of a run."""

from __future__ import annotations

from clonewatch.runner import RunConfig, RunSummary
from sinks.clickhouse import EXAMPLE_QUERY, redact

_BAR_WIDTH = 20


def risk_bar(risk: float) -> str:
    filled = round(risk * _BAR_WIDTH)
    return "█" * filled + "·" * (_BAR_WIDTH - filled)


def render_summary(summary: RunSummary, config: RunConfig, top: int = 5) -> str:
    rate = summary.accepted / summary.elapsed_s if summary.elapsed_s else 0.0
    actions = summary.action_counts()
    lines = [
        "",
        "clonewatch run summary",
        "──────────────────────",
        f"events accepted   {summary.accepted:,}   rejected {summary.rejected:,}   "
        f"({rate:,.0f} events/s over {summary.elapsed_s:.1f} s)",
        f"clients seen      {summary.clients:,}   "
        + "   ".join(f"{a} {actions[a]}" for a in ("allow", "throttle", "challenge", "deny") if a in actions),
        *([f"log format        {summary.format}" + (" (guessed from the first lines; --format names it)" if config.format == "auto" else "")]
          if summary.format not in (None, "canonical") else []),
        f"decisions         {summary.decisions:,} (action changes)",
        f"model             {summary.model_version} ({summary.model_source}); prompts embedded with {summary.embedder}"
        if summary.model_version else "model             none: no events to fit one on (train one with clonewatch train, then run --model)",
    ]
    if summary.probes:
        lines.append(
            f"health checks     {summary.probes:,} events from load balancers' and orchestrators' probes or metrics scrapes: stored, not scored"
        )
    requests = summary.accepted - summary.probes
    if requests and summary.with_query < requests / 2:
        lines += [
            f"queries           {summary.with_query:,} of {requests:,} requests carry a prompt or features: without request bodies the",
            "                  clients are judged on rate and request shape only, not on what they ask; log the body",
            "                  where the gateway can (docs/gateways.md), or send its canonical record",
        ]
    if note := summary.identities.note():
        lines += ["clients           " + note[0], *("                  " + line for line in note[1:])]
    if summary.fitted_on_input:
        lines += [
            "first look        with no baseline, clients are ranked against each other, attackers included: a customer",
            "                  of a kind this input holds once (an evaluation harness, a batch job) is as unusual as an",
            "                  attacker (README: A first look). Review who was acted on; to enforce, train on known-good",
            "                  traffic: clonewatch train --input GOOD.log --model model.cwm, then run --model model.cwm",
        ]
    if summary.dead_letter_reasons:
        lines.append("rejected because  " + "; ".join(f"{n}× {r}" for r, n in sorted(summary.dead_letter_reasons.items(), key=lambda kv: -kv[1])[:3]))
    if summary.bounded:
        lines.append("kept, bounded     " + "; ".join(f"{n:,}× {what}" for what, n in sorted(summary.bounded.items())))
    if summary.expired:
        ttl = f"{config.client_ttl / 86400:g} days" if config.client_ttl >= 86400 else f"{config.client_ttl / 3600:g} h"
        lines.append(f"forgotten         {summary.expired:,} client states, each after {ttl} without a request (--client-ttl); a client that returns starts afresh")
    min_events = config.policy.min_events
    riskiest = summary.riskiest(top, min_events)
    if riskiest:
        lines += [
            "",
            f"riskiest clients with {min_events}+ events (risk 1 - a: meant to be reached by a share a of benign clients;"
            f" throttle at {config.policy.throttle:g})",
        ]
        for score in riskiest:
            lines.append(f"  {score.client_id:<24} {risk_bar(score.risk)} {score.risk:.6f}  {score.action:<9} after {score.events_seen} events")
            for reason in score.reasons[:3]:
                lines.append(f"  {'':<24} · {reason}")
    lines += [
        "",
        "where the data went",
        f"  risk scores, decisions, dead letters  {redact(config.store_dsn)} (database clonewatch)",
        f"  decisions (JSON lines)                {config.decisions_path}",
        f"  dead letters (JSON lines)             {config.dead_letters_path}" + ("" if summary.rejected else " (none)"),
        "",
        "try:",
        f'  clonewatch sql "{EXAMPLE_QUERY}"' + ("" if config.store_dsn == "chdb://./clonewatch-data" else f" --store {redact(config.store_dsn)}"),
        "",
    ]
    return "\n".join(lines)
