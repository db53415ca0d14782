"""Helpers for the tests that run clonewatch's streaming commands against the real broker.

Generated traffic and a model fitted on it, the ``clonewatch`` CLI in subprocesses (as an
operator runs it), and reads of topics and consumer groups with kafka-python.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- traffic and model -----------------------------------------------------------------------


def numeric_traffic(seed: int = 1, scale: float = 0.1, cap: int = 150) -> tuple[list[dict], dict[str, str]]:
    """Predict-API traffic of the simulator's numeric scenario: canonical records in time
    order (at most ``cap`` per client) and each client's label (``benign``/``attack``).

    Numeric traffic needs no text embedder, which keeps worker start-up at a few seconds.
    """
    from clonewatch.lab.simulate import simulate

    traffic = simulate("numeric", seed=seed, scale=scale)
    kept: Counter[str] = Counter()
    events = []
    for event in traffic.events:
        if event.get("features") and kept[event["client_id"]] < cap:
            kept[event["client_id"]] += 1
            events.append(event)
    labels = {row["client_id"]: row["label"] for row in traffic.labels if row["client_id"] in kept}
    return events, labels


def train_numeric_model(path: Path, seed: int = 11, scale: float = 2.0) -> Path:
    """Fit and save a model on the benign clients of another numeric-scenario seed.

    Risk is calibrated on benign clients, so the baseline needs enough of them (about
    120 here) for the challenge and deny thresholds (0.999, 0.9999) to be reachable.
    """
    from clonewatch.lab.simulate import simulate
    from detectors import fit_clone_model
    from detectors.vectorize import Vectorizer
    from schemas import AccessEvent

    baseline = simulate("numeric", seed=seed, scale=scale)
    benign = {row["client_id"] for row in baseline.labels if row["label"] == "benign"}
    events = [msgspec.convert(e, AccessEvent) for e in baseline.events if e["client_id"] in benign and e.get("features")]
    fit_clone_model(events, Vectorizer().vectors(events), n_jobs=-1).save(path)  # the folds side by side: the same model, sooner
    return path


def reference_decisions(model_path: Path, events: list[dict]) -> set[tuple[str, str, int]]:
    """(client, action, events_seen) of every decision the embedded detector makes on ``events``."""
    from detectors import CloneDetector, CloneModel
    from detectors.vectorize import Vectorizer
    from schemas import AccessEvent

    records = [msgspec.convert(e, AccessEvent) for e in events]
    result = CloneDetector.from_model(CloneModel.load(model_path)).process(records, Vectorizer().vectors(records), {})
    return {(d.client_id, d.action.value, d.events_seen) for d in result.decisions}


def write_log(path: Path, events: Iterable[dict], mode: str = "w") -> None:
    with path.open(mode) as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")


# --- topics and groups -------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """Topic names and app id unique to one test, so tests sharing the broker do not meet."""

    app_id: str
    access: str
    decisions: str
    dead_letters: str

    @classmethod
    def fresh(cls, prefix: str = "t") -> Names:
        tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
        return cls(tag, f"{tag}.access", f"{tag}.decisions", f"{tag}.dead-letters")

    def env(self, bootstrap: str) -> dict[str, str]:
        """Environment for the clonewatch CLI (the variables docker-compose.yml sets too)."""
        return {
            **os.environ,
            "CLONEWATCH_BOOTSTRAP": bootstrap,
            "CLONEWATCH_APP_ID": self.app_id,
            "CLONEWATCH_ACCESS_TOPIC": self.access,
            "CLONEWATCH_DECISIONS_TOPIC": self.decisions,
            "CLONEWATCH_DEAD_LETTER_TOPIC": self.dead_letters,
            "CLONEWATCH_PARTITIONS": "4",
        }


def read_topic(bootstrap: str, topic: str, timeout: float = 20.0, **security: str) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) the topic holds now, partition by partition (``security``: kafka-python's SASL settings)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = {tp: end for tp, end in consumer.end_offsets(partitions).items() if end > 0}
        out: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=500).values():
                out += [(r.key, r.value) for r in records]
        return out
    finally:
        consumer.close()


def committed_everything(bootstrap: str, group: str, topic: str, **security: str) -> bool:
    """True once the group's committed offsets reach the end of every partition of ``topic``
    (False while the group has no coordinator yet)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **security)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **security)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        return all(end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items())
    except KafkaError:
        return False
    finally:
        consumer.close()
        admin.close()


def committed_offset(bootstrap: str, group: str, topic: str, partition: int = 0, **security: str) -> int:
    """The group's committed offset of one partition (-1 while it has none)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **security)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
    except KafkaError:
        return -1
    finally:
        admin.close()
    found = committed.get(TopicPartition(topic, partition))
    return found.offset if found is not None else -1


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.5,
    explain: Callable[[], str] | None = None,
    progress: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds, with ``what`` and what
    ``explain`` says. With ``progress``, the clock starts again whenever its value changes, so
    that a slow machine is told from a stuck process: the timeout is then one without progress
    (and five timeouts in all, so that a process busy going round in circles fails too)."""
    deadline = time.monotonic() + timeout
    ceiling = time.monotonic() + 5 * timeout
    last = progress() if progress else None
    while not condition():
        if progress and (now := progress()) != last:
            last, deadline = now, min(time.monotonic() + timeout, ceiling)
        if time.monotonic() > deadline:
            limit = f"{timeout:g} s without progress, or {5 * timeout:g} s in all" if progress else f"{timeout:g} s"
            raise AssertionError(f"timed out waiting for {what} ({limit})" + (f"\n{explain()}" if explain else ""))
        time.sleep(interval)


def wait_on(workers: Sequence[Worker], condition: Callable[[], bool], timeout: float, what: str) -> None:
    """:func:`wait_until` while ``workers`` work: the timeout counts from their last progress
    (what their status files count), and a failure says where each worker is."""
    wait_until(condition, timeout, what, explain=lambda: where_they_are(workers), progress=lambda: work_done(workers))


def work_done(workers: Sequence[Worker]) -> tuple[int, ...]:
    """What the workers' status files count so far: events, campaign facts and verdicts, decisions."""
    return tuple(w.status().get(key, 0) for w in workers for key in ("events", "campaign_facts", "campaign_verdicts", "decisions"))


def where_they_are(workers: Sequence[Background]) -> str:
    """For a failure message: each live worker's stacks (on SIGUSR1 a worker logs every thread
    and task) and the end of each log."""
    for worker in workers:
        if worker.alive():
            worker.proc.send_signal(signal.SIGUSR1)
    time.sleep(3)
    return "\n".join(f"--- {w.log_path} (exit code {w.proc.poll()}):\n{w.log()[-30_000:]}" for w in workers)


# --- the CLI in subprocesses ----------------------------------------------------------------------


def cli(*args: str, env: dict[str, str], stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m clonewatch ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "clonewatch", *args],
        cwd=REPO_ROOT, env=env, input=stdin, capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip


class Background:
    """A ``clonewatch`` command running in the background, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, program: Sequence[str] = ("-m", "clonewatch")) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *program, *args],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        """The end of the log; from its stack dump on if a worker could not stop."""
        log = self.log()
        stuck = log.find("did not stop within")
        return log[stuck : stuck + 40_000] if stuck >= 0 else log[-3000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed or committed."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.terminate()
        return self.stopped(timeout)

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stopped(self, timeout: float = 30) -> int:
        """Wait for the process to end; returns the exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"process did not stop on SIGTERM; log:\n{self.tail()}") from None


def stop_together(processes: Sequence[Background]) -> None:
    """SIGTERM them all at once (a deployment scaled down), and assert that each stops cleanly."""
    for process in processes:
        process.terminate()
    for process in processes:
        assert process.stopped() == 0, process.tail()


BATCH_SIZE = 32  # the test workers' --batch-size


class Worker(Background):
    """``clonewatch worker`` with its own ClickHouse (chdb) path, data dir and status file."""

    def __init__(self, directory: Path, model: Path, env: dict[str, str], *extra: str, program: Sequence[str] = ("-m", "clonewatch")) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.status_path = directory / "status.json"
        self.store = f"chdb://{directory / 'store'}"
        super().__init__(
            ["worker", "--model", str(model), "--store", self.store, "--data-dir", str(directory / "data"),
             "--status-file", str(self.status_path), "--log-interval", "0.5", "--batch-size", str(BATCH_SIZE), *extra],
            env, directory / "worker.log", program,
        )  # fmt: skip

    def status(self) -> dict:
        """The worker's latest progress counters (empty before the first report)."""
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_for(self, condition: Callable[[dict], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            assert self.alive(), f"worker exited with {self.proc.returncode}; log:\n{self.tail()}"
            return condition(self.status())

        wait_until(check, timeout, what)


def store_query(dsn: str, sql: str) -> list[tuple]:
    """Rows of a query on a worker's store, read in a subprocess once the worker has stopped
    (chdb lets one process at a time open a path; the test process has its own)."""
    code = (
        "import json, sys\n"
        "from sinks.clickhouse import ClickHouseStore\n"
        "rows = ClickHouseStore(sys.argv[1]).query(sys.argv[2])[1]\n"
        "print(json.dumps(rows, default=str))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, dsn, sql], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [tuple(row) for row in json.loads(done.stdout)]


def max_events_seen(dsn: str) -> dict[str, int]:
    """Each client's highest events_seen in a store's risk scores."""
    return {cid: int(n) for cid, n in store_query(dsn, "SELECT client_id, max(events_seen) FROM clonewatch.risk_scores GROUP BY client_id")}
