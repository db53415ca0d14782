"""Latency benchmark: from an event entering Kafka to its decision on the decisions topic.

Starts a real local broker (KRaft, as `clonewatch kafka start`) and one `clonewatch worker`
with a model fitted on a benign baseline, then:

1. **capacity**: sends the first events of simulated traffic (text and numeric APIs, every
   attack kind among benign customers) as fast as the producer can and times how fast the
   worker gets through them, embedding included;
2. **latency**: sends the following events in real time at half that rate (or ``--rate``),
   and for every decision the worker publishes, takes the time from the moment its event
   was handed to the producer to the moment the decision was read from the decisions topic.

Decisions are changes of a client's action, so the worker runs with a low throttle threshold
(``--throttle-at 0.5``) for the clients' actions to change often: the threshold decides how
many events are timed, not how long each takes.

    python benchmarks/latency.py                    # 120 s at half the measured capacity
    python benchmarks/latency.py --seconds 30       # quick look
    python benchmarks/latency.py --batch-within 0.2 # a worker that waits less to fill a batch
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import detection as bench  # noqa: E402

from clonewatch.lab.kafka.broker import LocalBroker  # noqa: E402
from clonewatch.lab.simulate import simulate  # noqa: E402
from clonewatch.streaming.config import StreamingConfig  # noqa: E402
from clonewatch.streaming.decision_feed import read_decisions  # noqa: E402
from detectors.embedding import BACKENDS, PromptEmbedder  # noqa: E402
from detectors.vectorize import Vectorizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET_P99_S = 1.0
TIMED_THRESHOLDS = ("--throttle-at", "0.5", "--challenge-at", "0.999", "--deny-at", "0.99999")  # for actions to change often


def worker_env(broker: LocalBroker, prefix: str) -> tuple[str, dict[str, str]]:
    """A fresh application id and topics on ``broker`` for one worker: the id, and its environment."""
    tag = f"{prefix}-{uuid.uuid4().hex[:6]}"
    return tag, {
        **os.environ, "CLONEWATCH_BOOTSTRAP": broker.bootstrap, "CLONEWATCH_APP_ID": tag,
        "CLONEWATCH_ACCESS_TOPIC": f"{tag}.access", "CLONEWATCH_DECISIONS_TOPIC": f"{tag}.decisions",
        "CLONEWATCH_DEAD_LETTER_TOPIC": f"{tag}.dead-letters",
    }  # fmt: skip


class Worker:
    def __init__(
        self, directory: Path, model: Path, env: dict[str, str], batch_size: int, batch_within: float, extra: tuple[str, ...] = TIMED_THRESHOLDS
    ) -> None:
        self.status_path = directory / "status.json"
        self.log_path = directory / "worker.log"
        args = [
            sys.executable, "-m", "clonewatch", "worker", "--model", str(model), "--store", f"chdb://{directory / 'store'}",
            "--data-dir", str(directory / "data"), "--status-file", str(self.status_path), "--log-interval", "0.5",
            "--batch-size", str(batch_size), "--batch-within", str(batch_within), *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)

    def status(self) -> dict:
        if self.proc.poll() is not None:
            raise SystemExit(f"the worker exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def events(self) -> int:
        return int(self.status().get("events", -1))

    def wait_for(self, events: int, timeout: float, what: str) -> float:
        deadline = time.monotonic() + timeout
        while self.events() < events:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}; worker log:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        return time.monotonic()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class DecisionListener(threading.Thread):
    """Follows the decisions topic (:func:`read_decisions`, as ``clonewatch decisions --follow``),
    noting when each (client, events_seen) decision arrived."""

    def __init__(self, config: StreamingConfig) -> None:
        super().__init__(daemon=True)  # left to exit with the benchmark: the feed waits for the next record
        self.config = config
        self.arrived: list[tuple[str, int, float, bool]] = []  # client, events_seen, arrival, a campaign's verdict

    def run(self) -> None:
        for raw in read_decisions(self.config, follow=True, from_beginning=True, timeout_s=30.0):
            now = time.monotonic()
            decision = json.loads(raw)
            by_campaign = any(r.startswith("campaign ") for r in decision["reasons"][:1])
            self.arrived.append((decision["client_id"], int(decision["events_seen"]), now, by_campaign))


def summary(latencies: np.ndarray) -> dict:
    if not len(latencies):
        return {"decisions": 0}
    return {"decisions": len(latencies), **{f"p{q}_s": float(np.percentile(latencies, q)) for q in (50, 90, 99)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120, help="length of the timed run (default: %(default)s)")
    parser.add_argument("--rate", type=float, help="events/s of the timed run (default: half the measured capacity)")
    parser.add_argument("--capacity-events", type=int, default=3000, help="events sent at once to measure capacity (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="the worker's largest batch (default: %(default)s, the worker's default)")
    parser.add_argument("--batch-within", type=float, default=1.0, help="the worker's longest wait to fill a batch (default: %(default)s, the worker's default)")
    parser.add_argument("--scale", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline-clients", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "clonewatch" / "embeddings.sqlite")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency.json")
    parser.add_argument("--worker-log", type=Path, help="keep the worker's log here")
    parser.add_argument("--embedder", choices=BACKENDS, default="torch", help="prompt embedder of the model and the worker (default: %(default)s)")
    args = parser.parse_args()

    model = bench.baseline_model(Vectorizer(PromptEmbedder(disk_cache=args.cache, backend=args.embedder)), args.baseline_clients)
    events = simulate("full", seed=args.seed, scale=args.scale).events

    with tempfile.TemporaryDirectory(prefix="clonewatch-latency-") as tmp, LocalBroker(Path(tmp) / "kafka") as broker:
        tmp_path = Path(tmp)
        model_path = model.save(tmp_path / "model.cwm")
        tag, env = worker_env(broker, "latency")
        print(f"broker at {broker.bootstrap}; starting the worker ...", file=sys.stderr)
        worker = Worker(tmp_path, model_path, env, args.batch_size, args.batch_within)
        try:
            worker.wait_for(0, 180, "the worker to start")
            listener = DecisionListener(StreamingConfig(bootstrap=broker.bootstrap, decisions_topic=f"{tag}.decisions"))
            listener.start()
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
            counts: dict[str, int] = defaultdict(int)
            sent_at: dict[tuple[str, int], float] = {}

            def send(event: dict) -> None:
                counts[event["client_id"]] += 1
                sent_at[(event["client_id"], counts[event["client_id"]])] = time.monotonic()
                producer.send(f"{tag}.access", key=event["client_id"].encode(), value=json.dumps(event).encode())

            first = events[: args.capacity_events]
            started = time.monotonic()
            for event in first:
                send(event)
            producer.flush()
            done = worker.wait_for(len(first), 900, "the capacity run")
            capacity = len(first) / (done - started)
            rate = args.rate or capacity / 2
            timed = events[len(first) : len(first) + int(rate * args.seconds)]
            print(f"capacity {capacity:.0f} events/s; timing {len(timed):,} events at {rate:.0f} events/s ...", file=sys.stderr)
            timed_from = len(sent_at)
            t0 = time.monotonic()
            for i, event in enumerate(timed):
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                send(event)
            producer.flush()
            worker.wait_for(len(first) + len(timed), 600, "the timed run")
            time.sleep(3.0)  # the last decisions on their way
        finally:
            worker.stop()
            if args.worker_log:
                args.worker_log.write_bytes(worker.log_path.read_bytes())

    timed_keys = set(list(sent_at)[timed_from:])
    timed_decisions = [(arrived - sent_at[(c, n)], campaign) for c, n, arrived, campaign in list(listener.arrived) if (c, n) in timed_keys]
    if not timed_decisions:
        raise SystemExit("no decision was published during the timed run")
    latencies = np.array([s for s, _ in timed_decisions])
    own = np.array([s for s, campaign in timed_decisions if not campaign])
    campaign = np.array([s for s, campaign in timed_decisions if campaign])
    report = {
        "date": date.today().isoformat(), "machine": f"{os.cpu_count()} cores", "embedder": args.embedder, "batch_size": args.batch_size, "batch_within_s": args.batch_within,
        "capacity_events_per_s": capacity, "rate_events_per_s": rate, "timed_events": len(timed), "decisions_timed": len(latencies),
        "p50_s": float(np.percentile(latencies, 50)), "p90_s": float(np.percentile(latencies, 90)),
        "p99_s": float(np.percentile(latencies, 99)), "max_s": float(latencies.max()), "target_p99_s": TARGET_P99_S,
        "own": summary(own), "campaign": summary(campaign),
    }  # fmt: skip
    print(f"\ncapacity {capacity:,.0f} events/s (one worker, {os.cpu_count()} cores, embedding included); timed at {rate:,.0f} events/s for {args.seconds:.0f} s")
    print(f"event into Kafka -> its decision read from the decisions topic, {len(latencies)} decisions, worker --batch-size {args.batch_size} --batch-within {args.batch_within}:")
    print(f"  all       {len(latencies):>4}: p50 {report['p50_s'] * 1000:,.0f} ms   p90 {report['p90_s'] * 1000:,.0f} ms   p99 {report['p99_s'] * 1000:,.0f} ms   max {report['max_s'] * 1000:,.0f} ms")
    for name, part in (("own", report["own"]), ("campaign", report["campaign"])):
        if part["decisions"]:
            print(f"  {name:<9} {part['decisions']:>4}: p50 {part['p50_s'] * 1000:,.0f} ms   p90 {part['p90_s'] * 1000:,.0f} ms   p99 {part['p99_s'] * 1000:,.0f} ms")
    print(f"target p99 < {TARGET_P99_S:.0f} s: {'met' if report['p99_s'] < TARGET_P99_S else 'MISSED'}")
    bench.write_report(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
