"""``clonewatch train``: fit the model on baseline (benign) traffic and save it."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path


from clonewatch.inputs import open_lines
from clonewatch.commands.options import add_embedder_option, add_format_options, log_format
from clonewatch.commands.sql import existing_store
from clonewatch.progress import how_far, progress_bar
from clonewatch.threads import fit_threads_to_cpus
from detectors.embedding import DEFAULT_MAX_TOKENS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fit the detection model on baseline traffic",
        description=(
            "Fit the benign envelope (codebook, distance scales, coverage curve per vector space) "
            "and the risk model (tail test, nearest benign clients, isolation forest) on baseline "
            "traffic, calibrate risk on the baseline clients' peaks (a risk of 0.99 is reached by "
            "about 1% of clients like these), and save it all as one versioned model file for "
            "`clonewatch run --model` and the workers. Use a day or more of mostly benign traffic "
            "from as many clients as you have: the more clients, the finer the calibration."
        ),
        epilog="example: clonewatch simulate --scenario benign --out base && clonewatch train --input base/events.jsonl --model model.cwm",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", "-i", metavar="FILE|-", help="baseline access log, mostly benign clients (canonical JSON lines or a gateway's log; gzip-compressed too)")
    source.add_argument(
        "--from-store", metavar="DSN",
        help="retrain on the requests stored in this ClickHouse store (access_events) of clients never acted on; "
        "text requests count only if their prompt was kept (--keep-prompts on run or worker)",
    )  # fmt: skip
    add_format_options(parser, strict=False)
    parser.add_argument("--since", metavar="SPAN", type=parse_span, help="with --from-store: the last SPAN of stored traffic (e.g. 7d, 12h; default: all of it)")
    parser.add_argument("--model", required=True, type=Path, help="where to write the model file")
    parser.add_argument("--window", type=int, default=200, help="events per client kept in the sliding window (default: %(default)s)")
    parser.add_argument("--regions", type=int, default=64, help="codebook regions for coverage (default: %(default)s)")
    add_embedder_option(parser, scoring=False)
    parser.add_argument(
        "--max-tokens", type=parse_max_tokens, default=DEFAULT_MAX_TOKENS, metavar="N",
        help="cut prompts at N tokens (8 to %(default)s) before embedding them; the model records it and scoring "
        "follows it. 128 embeds long prompts about 1.6x faster and moves their vectors (README: Embedding benchmark) "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", "-j", type=parse_jobs, default=-1,
        help="processes that fit the calibration folds side by side; -1: one per core (default: %(default)s). The model is the same for any value",
    )  # fmt: skip
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.set_defaults(func=main)


def parse_jobs(text: str) -> int:
    """A joblib process count: a positive number, or -1 for one per core (-2 all but one...)."""
    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--jobs is a whole number, got {text!r}") from None
    if jobs == 0:
        raise argparse.ArgumentTypeError("--jobs 0 means nothing: give a number of processes, or -1 for one per core")
    return jobs


def parse_max_tokens(text: str) -> int:
    if not text.strip().isdigit() or not 8 <= int(text) <= DEFAULT_MAX_TOKENS:
        raise argparse.ArgumentTypeError(f"--max-tokens is a whole number from 8 to {DEFAULT_MAX_TOKENS} (the model's own limit), got {text!r}")
    return int(text)


def parse_span(text: str) -> float:
    """Seconds in a span like 7d, 12h, 30m or 90s.

    >>> parse_span("7d"), parse_span("1.5h")
    (604800.0, 5400.0)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"a span is a positive number and a unit (d, h, m or s), e.g. 7d; got {text!r}")
    return float(match.group(1)) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[match.group(2)]


def main(args: argparse.Namespace) -> int:
    fit_threads_to_cpus()  # before torch starts its pool
    from clonewatch.identities import Identities
    from clonewatch.runner import batched
    from detectors.probes import is_probe
    from detectors.embedding import PromptEmbedder
    from detectors.training import CALIBRATION_FOLDS, fit_clone_model
    from detectors.policy import DEFAULT_TARGET_FPR
    from detectors.vectorize import Vectorizer
    from ingest.reader import EventReader
    from schemas import AccessEvent, DeadLetter
    from sinks.clickhouse import ClickHouseStore

    started = time.monotonic()
    if args.since is not None and args.from_store is None:
        raise ValueError("--since goes with --from-store")
    reader = EventReader(args.input or "", log_format(args))
    vectorizer = Vectorizer(PromptEmbedder(backend=args.embedder, disk_cache=args.embedding_cache, max_tokens=args.max_tokens))
    events, vectors, rejected, source, first_rejected = [], [], 0, {}, None
    embedding = progress_bar(args.quiet, desc="embedding", unit=" ev")
    if args.from_store is not None:
        existing_store(args.from_store)
        events, source = ClickHouseStore(args.from_store).history(args.since)
        print(
            f"read {len(events):,} stored requests from {source['from']} to {source['to']}; left out "
            f"{source['left_out_flagged']['clients']:,} clients that were acted on ({source['left_out_flagged']['events']:,} requests) "
            f"and {source['left_out_without_prompt']:,} text requests whose prompt was not kept"
        )
        for batch in batched(events, 256):
            vectors.extend(vectorizer.vectors(batch))
            embedding.update(len(batch))
    else:
        with open_lines(args.input) as lines:
            for batch in batched(reader.read(lines), 256):
                accepted = [r for r in batch if isinstance(r, AccessEvent)]
                rejected += len(batch) - len(accepted)
                first_rejected = first_rejected or next((r for r in batch if isinstance(r, DeadLetter)), None)
                events.extend(accepted)
                vectors.extend(vectorizer.vectors(accepted))
                embedding.set_postfix_str(", ".join(how_far(lines, started)), refresh=False)
                embedding.update(len(accepted))
    embedding.close()
    if not events:
        why = f"; line {first_rejected.line}: {first_rejected.reason}" if first_rejected is not None else ""
        print(f"clonewatch train: no valid events in {args.input or args.from_store} ({rejected} rejected{why})", file=sys.stderr)
        return 1
    fit_started = time.monotonic()
    stages = 2 + 2 * CALIBRATION_FOLDS  # references, features and a risk model per fold, sequential tests
    fitting = progress_bar(args.quiet, desc="fitting", total=stages, bar_format="{desc}: {n}/{total} steps, {elapsed}{postfix}")

    def report(stage: str) -> None:
        fitting.set_postfix_str(stage, refresh=False)
        fitting.update()

    model = fit_clone_model(events, vectors, window=args.window, n_regions=args.regions, n_jobs=args.jobs, progress=report)
    fitting.close()
    model.metadata["embedder"] = vectorizer.embedder.describe()
    if source:
        model.metadata["training_source"] = source
    model.save(args.model)
    meta = model.metadata
    calibrated = meta["calibration"]["clients"]
    print(
        f"trained {model.version} on {meta['training_events']:,} events from {meta['training_clients']:,} clients "
        f"({meta['training_snapshots']:,} snapshots; {rejected} lines rejected) in {time.monotonic() - started:.1f} s "
        f"(fitting {time.monotonic() - fit_started:.1f} s of it)"
    )
    identities = Identities()
    identities.learn(e for e in events if not is_probe(e))
    if note := identities.note():
        print("warning: " + " ".join(note) + "; a baseline of them is not one of clients", file=sys.stderr)
    if probes := len(events) - meta["training_events"]:
        print(f"{probes:,} health checks and metrics scrapes left out (load balancers', orchestrators' and monitors' probes: no client's requests)")
    if calibrated:
        print(f"risk calibrated on the peaks of {calibrated:,} clients")
        if calibrated * DEFAULT_TARGET_FPR < 1.0:
            print(
                f"  {calibrated:,} clients resolve 1 in {calibrated:,} by counting: the default target of 1 benign client in "
                f"{1 / DEFAULT_TARGET_FPR:,.0f} rests on the tail fitted beyond their peaks and on accumulated evidence, so "
                "attackers that look like the most unusual of these customers are acted on late or not at all; a larger "
                "baseline (more days, more customers) acts sooner (README: Risk)"
            )  # fmt: skip
    else:
        print("risk calibrated on snapshots only: too few clients are long enough to calibrate on; add baseline traffic")
    sequential = meta["sequential"]
    print(
        f"evidence counts each event as 1/{sequential['autocorrelation_time']:.0f} of a bet; "
        f"{sequential['between_clients_share']:.0%} of the p-values' variation is clients' persistent habits, "
        "which that weight does not cover (README: Why this test)"
    )
    embedder = vectorizer.embedder
    print("spaces: " + ", ".join(f"{s} ({d['regions']} regions)" for s, d in meta["spaces"].items()) + f"; prompts embedded with {embedder.name}{embedder.disk_cache_note}")
    print(f"saved to {args.model}")
    return 0
