"""``clonewatch drift``: is today's benign traffic still like the model's baseline?

Risk is calibrated on the baseline's benign clients: a benign client's peak risk is
"beyond this share of baseline clients", so for clients like the baseline's it is spread
evenly over 0..1, and a share ``a`` of them peaks above ``1 - a``. When customers change
(a new integration, a new model, a new market) their peaks pile up near 1 and the
thresholds stop meaning what they say; that is when to retrain (``train --from-store``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from clonewatch.commands.options import add_store_option
from clonewatch.commands.sql import existing_store
from clonewatch.commands.train import parse_span
from detectors.policy import PolicyConfig
from sinks.clickhouse import ClickHouseStore

LEVELS = (0.5, 0.9, 0.99)
MIN_EVENTS = PolicyConfig().min_events  # the calibration's peaks count from here
DRIFT_P = 0.01  # a Kolmogorov-Smirnov p-value below this says the peaks are not spread as calibrated


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "drift",
        help="compare the benign clients in the store with the model's baseline",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog="example: clonewatch drift --model model.cwm --store chdb://./clonewatch-data --since 1d",
    )
    parser.add_argument("--model", required=True, type=Path, help="the model whose calibration to check")
    parser.add_argument("--since", type=parse_span, metavar="SPAN", help="the last SPAN of stored scores (e.g. 1d; default: all)")
    add_store_option(parser)
    parser.set_defaults(func=main)


def drift_report(peaks: np.ndarray) -> dict:
    """Observed vs calibrated shares of clients peaking above each level, and a KS test of the
    peaks against the even spread calibration promises.

    >>> rng = np.random.default_rng(0)
    >>> drift_report(rng.uniform(size=400))["drift"], drift_report(rng.uniform(size=400) ** 0.3)["drift"]
    (False, True)
    """
    from scipy.stats import kstest

    peaks = np.asarray(peaks, dtype=np.float64)
    if len(peaks) < 10:
        raise ValueError(f"only {len(peaks)} clients never acted on were scored by this model: too few to tell")
    test = kstest(peaks, "uniform")
    return {
        "clients": len(peaks),
        "above": {level: float((peaks >= level).mean()) for level in LEVELS},
        "ks_statistic": float(test.statistic),
        "p_value": float(test.pvalue),
        "drift": bool(test.pvalue < DRIFT_P),
        "direction": "higher" if np.median(peaks) > 0.5 else "lower",
    }


def main(args: argparse.Namespace) -> int:
    from detectors.model import CloneModel

    model = CloneModel.load(args.model)
    existing_store(args.store)
    store = ClickHouseStore(args.store)
    db, span = store.database, args.since
    window = "" if span is None else f" AND ts >= (SELECT max(ts) FROM {db}.risk_scores) - toIntervalSecond({int(span)})"
    _, rows = store.query(
        f"SELECT client_id, max(risk) FROM {db}.risk_scores FINAL WHERE model_version = {{version:String}} AND events_seen >= {MIN_EVENTS}{window}"
        f" AND client_id NOT IN (SELECT client_id FROM {db}.decisions WHERE action != 'allow') GROUP BY client_id",
        {"version": model.version},
    )  # fmt: skip
    report = drift_report(np.array([r[1] for r in rows]))
    trained = model.metadata.get("training_range")
    print(f"{report['clients']:,} clients never acted on, scored by {model.version}" + (f" (trained on {trained[0]} .. {trained[1]})" if trained else ""))
    print("share whose peak risk reached   observed   calibrated")
    for level, share in report["above"].items():
        print(f"  {level:<29g} {share:8.1%}   {1 - level:8.1%}")
    print(f"Kolmogorov-Smirnov against the calibrated spread: D = {report['ks_statistic']:.3f}, p = {report['p_value']:.2g}")
    if report["drift"]:
        print(f"drift: benign clients score {report['direction']} than the baseline's; the thresholds no longer mean what they say."
              " Retrain: clonewatch train --from-store ... --since 7d")  # fmt: skip
    else:
        print("no sign of drift: benign clients are spread over the risk scale as the baseline's were")
    print("(peaks are read from the stored scores, one per client per batch, so they run a little under the true ones;"
          " clients acted on are left out, which lowers the top share)")  # fmt: skip
    return 0
