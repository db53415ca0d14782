"""``clonewatch train``: fit the model on baseline (benign) traffic and save it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from clonewatch.inputs import open_lines
from clonewatch.commands.options import add_embedder_option
from clonewatch.runner import batched
from detectors import fit_clone_model
from detectors.embedding import PromptEmbedder
from detectors.vectorize import Vectorizer
from ingest.decode import EventDecoder
from schemas import AccessEvent


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
    parser.add_argument("--input", "-i", required=True, metavar="FILE|-", help="baseline JSON-lines access log (mostly benign clients)")
    parser.add_argument("--model", required=True, type=Path, help="where to write the model file")
    parser.add_argument("--window", type=int, default=200, help="events per client kept in the sliding window (default: %(default)s)")
    parser.add_argument("--regions", type=int, default=64, help="codebook regions for coverage (default: %(default)s)")
    add_embedder_option(parser, scoring=False)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    vectorizer = Vectorizer(PromptEmbedder(backend=args.embedder))
    events: list[AccessEvent] = []
    vectors: list = []
    rejected = 0
    with open_lines(args.input) as lines, tqdm(desc="embedding", unit=" ev", disable=args.quiet or not sys.stderr.isatty()) as bar:
        for batch in batched(EventDecoder(source=args.input).decode_lines(lines), 256):
            accepted = [r for r in batch if isinstance(r, AccessEvent)]
            rejected += len(batch) - len(accepted)
            events.extend(accepted)
            vectors.extend(vectorizer.vectors(accepted))
            bar.update(len(accepted))
    if not events:
        print(f"clonewatch train: no valid events in {args.input} ({rejected} rejected)", file=sys.stderr)
        return 1
    model = fit_clone_model(events, vectors, window=args.window, n_regions=args.regions)
    model.metadata["embedder"] = vectorizer.embedder.describe()
    model.save(args.model)
    meta = model.metadata
    calibrated = meta["calibration"]["clients"]
    print(
        f"trained {model.version} on {meta['training_events']:,} events from {meta['training_clients']:,} clients "
        f"({meta['training_snapshots']:,} snapshots; {rejected} lines rejected) in {time.monotonic() - started:.1f} s"
    )
    if calibrated:
        print(f"risk calibrated on the peaks of {calibrated:,} clients")
    else:
        print("risk calibrated on snapshots only: too few clients are long enough to calibrate on; add baseline traffic")
    print("spaces: " + ", ".join(f"{s} ({d['regions']} regions)" for s, d in meta["spaces"].items()) + f"; prompts embedded with {vectorizer.embedder.name}")
    print(f"saved to {args.model}")
    return 0
