"""Overload benchmark: one worker offered ten times what it can score, with and without --max-lag.

Starts a real local broker and, for each mode, a fresh `clonewatch worker` (a model fitted on a
benign baseline), measures the worker's capacity (embedding included) as `latency.py` does, then
sends simulated traffic at ``--load`` times that rate for ``--seconds`` and samples, every two
seconds, how far the worker is behind: the events sent but not yet scored, and how old the
traffic it is scoring now is (the status file's event age). After the sending stops it keeps
sampling until the worker has caught up (or ``--drain`` seconds). Modes: every prompt embedded
(the default worker) and ``--max-lag SECONDS`` (the overload mode: past that lag, embed only the
prompts it keeps up with, a fair share per client). What the sampling costs in detection is
measured by replaying the detection benchmark with a share of each batch embedded
(``detection.py --embed-share``; README, "Overload").

    python benchmarks/overload.py                 # 10x for 30 s, each mode
    python benchmarks/overload.py --seconds 20    # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import detection as bench  # noqa: E402
import latency  # noqa: E402

from clonewatch.lab.kafka.broker import LocalBroker  # noqa: E402
from clonewatch.lab.simulate import simulate  # noqa: E402
from detectors.embedding import PromptEmbedder  # noqa: E402
from detectors.vectorize import Vectorizer  # noqa: E402

SAMPLE_S = 2.0


def run_mode(broker: LocalBroker, directory: Path, model_path: Path, events: list[dict], extra: tuple[str, ...], args) -> dict:
    """One fresh worker: its capacity, then ``args.load`` times that for ``args.seconds``, sampled."""
    tag, env = latency.worker_env(broker, "overload")
    directory.mkdir()
    worker = latency.Worker(directory, model_path, env, 256, 1.0, extra)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, acks=1)

    def send(event: dict) -> None:
        producer.send(f"{tag}.access", key=event["client_id"].encode(), value=json.dumps(event).encode())

    try:
        worker.wait_for(0, 180, "the worker to start")
        first = events[: args.capacity_events]
        started = time.monotonic()
        for event in first:
            send(event)
        producer.flush()
        capacity = len(first) / (worker.wait_for(len(first), 900, "the capacity run") - started)
        rate = args.load * capacity
        offered = events[len(first) : len(first) + int(rate * args.seconds)]
        if len(offered) < int(rate * args.seconds):
            print(f"  the simulated traffic holds {len(offered):,} events, {len(offered) / rate:.0f} s of the load: raise --scale", file=sys.stderr)
        print(f"  {' '.join(extra) or 'every prompt embedded'}: capacity {capacity:.0f} events/s; offering {len(offered):,} at {rate:.0f}/s", file=sys.stderr)
        at_load = worker.status()
        samples, sent, t0 = [], 0, time.monotonic()
        next_sample = t0
        while True:
            now = time.monotonic()
            due = min(len(offered), int((now - t0) * rate))
            while sent < due:
                send(offered[sent])
                sent += 1
            if now >= next_sample:
                producer.flush()
                status = worker.status()
                scored = int(status.get("events", 0)) - len(first)
                samples.append({"t_s": round(now - t0, 1), "sent": sent, "scored": scored, "behind_events": sent - scored,
                                "event_age_s": status.get("event_age_s"), "not_embedded": status.get("not_embedded", 0),
                                "embed_seconds": status.get("embed_seconds"), "detect_seconds": status.get("detect_seconds")})  # fmt: skip
                print(f"    t={now - t0:5.0f} s  sent {sent:>6,}  scored {scored:>6,}  behind {sent - scored:>6,}", file=sys.stderr)
                next_sample = now + SAMPLE_S
                if sent == len(offered) and (scored >= sent or now - t0 > args.seconds + args.drain):
                    break
            time.sleep(0.002)
        return {
            "mode": " ".join(extra) or "every prompt embedded", "capacity_events_per_s": capacity, "offered_events_per_s": rate,
            "offered_events": len(offered), "offered_seconds": len(offered) / rate, "samples": samples, "max_behind_events": max(s["behind_events"] for s in samples),
            "caught_up_after_s": samples[-1]["t_s"] if samples[-1]["scored"] >= len(offered) else None,
            "not_embedded": samples[-1]["not_embedded"],
            # of the worker's time under load, what embedding and detection took; the rest is the stream's own work
            "embed_seconds": (samples[-1]["embed_seconds"] or 0) - (at_load.get("embed_seconds") or 0),
            "detect_seconds": (samples[-1]["detect_seconds"] or 0) - (at_load.get("detect_seconds") or 0),
            "seconds": samples[-1]["t_s"],
        }  # fmt: skip
    finally:
        producer.close()
        worker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", type=float, default=10.0, help="offered load as a multiple of the measured capacity (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the load is offered (default: %(default)s)")
    parser.add_argument("--drain", type=float, default=120.0, help="the longest wait for the worker to catch up afterwards (default: %(default)s)")
    parser.add_argument("--max-lag", type=float, default=10.0, help="the overload mode's --max-lag (default: %(default)s)")
    parser.add_argument("--capacity-events", type=int, default=2000, help="events sent at once to measure capacity (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0, help="simulated traffic to draw from: enough for the load (default: %(default)s)")
    parser.add_argument("--baseline-clients", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "clonewatch" / "embeddings.sqlite")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "overload.json")
    args = parser.parse_args()

    model = bench.baseline_model(Vectorizer(PromptEmbedder(disk_cache=args.cache)), args.baseline_clients)
    events = simulate("full", seed=7, scale=args.scale).events  # the worker embeds them itself, without the cache
    runs = []
    with tempfile.TemporaryDirectory(prefix="clonewatch-overload-") as tmp, LocalBroker(Path(tmp) / "kafka") as broker:
        model_path = model.save(Path(tmp) / "model.cwm")
        for i, extra in enumerate(((), ("--max-lag", f"{args.max_lag:g}"))):
            runs.append(run_mode(broker, Path(tmp) / f"worker-{i}", model_path, events, extra, args))
    print(f"\none worker, {os.cpu_count()} cores, offered {args.load:g}x its capacity:")
    for run in runs:
        caught = f"caught up {run['caught_up_after_s']:.0f} s after the load began" if run["caught_up_after_s"] is not None else f"still {run['samples'][-1]['behind_events']:,} events behind after {run['samples'][-1]['t_s']:.0f} s"
        print(f"  {run['mode']:<22} capacity {run['capacity_events_per_s']:5.0f}/s, offered {run['offered_events']:,} events over {run['offered_seconds']:.0f} s; most behind {run['max_behind_events']:>6,} events  {caught};"
              f" {run['not_embedded']:,} prompts left unembedded; of its {run['seconds']:.0f} s, embedding {run['embed_seconds']:.0f} s, detection {run['detect_seconds']:.0f} s")  # fmt: skip
    bench.write_report(args.out, {"date": date.today().isoformat(), "machine": f"{os.cpu_count()} cores", "load": args.load, "seconds": args.seconds, "runs": runs})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
