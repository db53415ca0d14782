"""The streaming pipeline through the real broker: shipper -> Kafka -> Faust workers -> ClickHouse + decisions.

Workers run as `clonewatch worker` subprocesses, each with its own embedded ClickHouse
path. The expected decisions are those of the embedded detector on the same log: the
streaming path must give exactly those, however it is split, killed or restarted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from kafka import KafkaConsumer, TopicPartition

from clonewatch.lab.kafka.broker import LocalBroker
from schemas import to_epoch
from tests.streaming_support import (
    BATCH_SIZE,
    REPO_ROOT,
    Background,
    Names,
    Worker,
    cli,
    committed_everything,
    committed_offset,
    max_events_seen,
    numeric_traffic,
    read_topic,
    reference_decisions,
    stop_together,
    store_query,
    wait_on,
    wait_until,
    write_log,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def traffic() -> tuple[list[dict], dict[str, str]]:
    return numeric_traffic()


@pytest.fixture(scope="module")
def model(numeric_model: Path) -> Path:
    return numeric_model


@pytest.fixture(scope="module")
def expected(model: Path, traffic) -> set[tuple[str, str, int]]:
    return reference_decisions(model, traffic[0])


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scrape(url: str) -> dict[str, str]:
    """Prometheus text as series -> value."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def decisions_on_topic(bootstrap: str, names: Names) -> list[dict]:
    return [json.loads(value) for _, value in read_topic(bootstrap, names.decisions)]


def as_set(decisions: list[dict]) -> set[tuple[str, str, int]]:
    return {(d["client_id"], d["action"], d["events_seen"]) for d in decisions}


def caught_up(bootstrap: str, names: Names, worker: Worker) -> bool:
    """The group has committed the end of the access topic (it commits only processed batches)."""
    assert worker.alive(), f"worker exited with {worker.proc.returncode}; log:\n{worker.tail()}"
    return committed_everything(bootstrap, names.app_id, names.access)


def ship(log: Path, names: Names, bootstrap: str) -> None:
    done = cli("ship", "--file", str(log), "--once", env=names.env(bootstrap))
    assert done.returncode == 0, done.stderr.decode()


def test_a_worker_finds_its_tables_changelogs_made_before_it_joins_its_group(kafka_bootstrap: str) -> None:
    """Made by ensure_topics with the campaign topics, compacted as Faust makes them, so that
    the group's first assignment never leaves one out as not yet in the broker's metadata."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    from clonewatch.streaming.config import CLIENT_TABLE, STAGE_TABLE, StreamingConfig
    from clonewatch.streaming.topics import ensure_topics

    names = Names.fresh("tables")
    config = StreamingConfig(bootstrap=kafka_bootstrap, app_id=names.app_id, access_topic=names.access, decisions_topic=names.decisions, dead_letter_topic=names.dead_letters, partitions=3)
    counts = ensure_topics(config, worker_topics=True)
    clients, stage = config.changelog_topic(CLIENT_TABLE), config.changelog_topic(STAGE_TABLE)
    assert (counts[clients], counts[stage]) == (3, 1)
    assert ensure_topics(config, worker_topics=True) == counts  # a second worker finds them as they are
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic) for topic in (clients, stage)])
    finally:
        admin.close()
    topics = next(iter(described.values()))  # {topic: {config key: its data}}
    assert {topic: topics[topic]["cleanup.policy"]["value"] for topic in (clients, stage)} == {clients: "compact", stage: "compact"}


def test_a_worker_asked_with_sigusr1_says_where_each_agent_waits_and_goes_on(kafka_bootstrap: str, tmp_path: Path, model: Path) -> None:
    names = Names.fresh("usr1")
    worker = Worker(tmp_path / "worker", model, names.env(kafka_bootstrap))
    try:
        worker.wait_for(lambda s: s.get("partitions"), 90, "the worker to hold its partitions")
        worker.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: "--- task" in worker.log(), 30, "the stacks in the log")
        time.sleep(1.0)
        assert worker.alive()
        stacks = worker.log()
        assert "--- thread MainThread" in stacks
        for agent in ("in_batches", "track_campaigns"):  # the await chains reach into the agents' own code
            assert f"in {agent}" in stacks, stacks[-5000:]
    finally:
        assert worker.stop() == 0, worker.tail()


def test_attacker_denied_benign_not(kafka_bootstrap: str, tmp_path: Path, model: Path, traffic, expected) -> None:
    events, labels = traffic
    names = Names.fresh("e2e")
    log = tmp_path / "access.log"
    write_log(log, events)
    with log.open("a") as handle:  # one line the shipper cannot read, one the worker rejects
        handle.write("this is not json\n")
        handle.write('{"client_id": "key_no_time", "prompt": "hello"}\n')
    ship(log, names, kafka_bootstrap)

    worker = Worker(tmp_path / "worker", model, names.env(kafka_bootstrap), "--metrics-address", "127.0.0.1:0")
    try:
        wait_on([worker], lambda: caught_up(kafka_bootstrap, names, worker), 120, "the worker to score every event")
        # What Prometheus scrapes: the counters, the lag of each partition, clients by action.
        url = re.search(r"metrics on (http://\S+)", worker.log()).group(1)
        wait_until(lambda: scrape(url).get("clonewatch_worker_events_total") == str(len(events)), 30, "the metrics to count every event")
        metrics = scrape(url)
        assert metrics["clonewatch_worker_dead_letters_total"] == "1" and int(metrics["clonewatch_worker_decisions_total"]) == len(expected)
        lags = {name: value for name, value in metrics.items() if name.startswith("clonewatch_worker_consumer_lag{")}
        assert len(lags) == 4 and set(lags.values()) == {"0"}, lags
        assert int(metrics['clonewatch_worker_clients{action="deny"}']) >= 1 and float(metrics["clonewatch_worker_embed_seconds_total"]) > 0
    finally:
        assert worker.stop() == 0, worker.tail()
    assert "[ERROR]" not in worker.log() and "[WARNING]" not in worker.log(), worker.tail()  # a healthy run says nothing alarming

    decisions = decisions_on_topic(kafka_bootstrap, names)
    assert as_set(decisions) == expected  # exactly the embedded detector's decisions
    assert len(decisions) == len(expected)  # each once: nothing replayed in a clean run
    final = {}
    for decision in decisions:  # a client's decisions share its partition, in order
        final[decision["client_id"]] = decision["action"]
    denied = {cid for cid, action in final.items() if action == "deny"}
    flagged = {cid for cid, action in final.items() if action != "allow"}
    attackers = {cid for cid, label in labels.items() if label == "attack"}
    assert len(flagged & attackers) >= 3 and denied & attackers
    assert not flagged - attackers, "a benign client was flagged"

    # The gateway-side cache of examples/ sees every client's latest action.
    cache = load_example("gateway_decision_cache").DecisionCache(kafka_bootstrap, names.decisions).start()
    try:
        assert cache.wait_until_loaded(timeout_s=30)
        assert {cid: cache.action_for(cid) for cid in final} == final
        assert cache.action_for("key_never_seen") == "allow"
        cache.ttl_s, cache.clock = 3600.0, lambda: 4102444800.0  # in 2100, every decision has lapsed
        assert {cache.action_for(cid) for cid in final} == {"allow"}
    finally:
        cache.stop()

    # The readable form, as an operator sees it.
    shown = cli("decisions", env=names.env(kafka_bootstrap))
    assert shown.returncode == 0
    assert len(shown.stdout.decode().splitlines()) == len(decisions)
    assert any(" DENY " in line for line in shown.stdout.decode().splitlines())

    counts = Counter(e["client_id"] for e in events)
    assert max_events_seen(worker.store) == counts
    stored = store_query(worker.store, "SELECT client_id, action, events_seen FROM clonewatch.decisions")
    assert {(c, a, int(n)) for c, a, n in stored} == expected
    letters = {letter["raw"]: letter for letter in (json.loads(v) for _, v in read_topic(kafka_bootstrap, names.dead_letters))}
    assert len(letters) == 2
    assert letters.pop("this is not json")["reason"].startswith("not JSON")  # from the shipper
    (rejected,) = letters.values()  # from the worker, with the request id the shipper added
    assert "missing required field `ts`" in rejected["reason"]
    assert json.loads(rejected["raw"])["client_id"] == "key_no_time"
    assert store_query(worker.store, "SELECT count() FROM clonewatch.dead_letters") == [(1,)]  # the worker's one


def test_clients_that_go_quiet_leave_the_table(kafka_bootstrap: str, tmp_path: Path, model: Path, traffic) -> None:
    """With a time to live of 60 s of event time, the clients quiet for longer than that before
    the newest event end with a tombstone in the table's changelog (compaction then drops
    them) and the rest with their state; clients that come back after expiring start afresh."""
    events, _ = traffic
    names = Names.fresh("ttl")
    log = tmp_path / "access.log"
    write_log(log, events)
    ship(log, names, kafka_bootstrap)
    last: dict[str, float] = {}
    for event in events:
        last[event["client_id"]] = max(last.get(event["client_id"], 0.0), to_epoch(event["ts"]))
    horizon = max(last.values()) - 60.0
    quiet = {client for client, ts in last.items() if ts < horizon}
    assert quiet and quiet != set(last)

    def final_values() -> dict[str, bytes | None]:
        return {key.decode(): value for key, value in read_topic(kafka_bootstrap, f"{names.app_id}-clients-changelog")}

    worker = Worker(tmp_path / "worker", model, names.env(kafka_bootstrap), "--client-ttl", "60")
    try:
        wait_on([worker], lambda: caught_up(kafka_bootstrap, names, worker), 120, "the worker to score every event")
        wait_until(lambda: {c for c, v in final_values().items() if v is None} == quiet, 60, "the quiet clients' tombstones")
        assert {c for c, v in final_values().items() if v is not None} == set(last) - quiet
        assert worker.status()["expired"] >= len(quiet)
    finally:
        assert worker.stop() == 0, worker.tail()
    assert "[ERROR]" not in worker.log(), worker.tail()


def test_killed_worker_resumes_exactly(kafka_bootstrap: str, tmp_path: Path, model: Path, traffic, expected) -> None:
    events, _ = traffic
    names = Names.fresh("kill")
    log = tmp_path / "access.log"
    write_log(log, events)
    ship(log, names, kafka_bootstrap)
    env = names.env(kafka_bootstrap)

    first = Worker(tmp_path / "first", model, {**env, "CLONEWATCH_COMMIT_INTERVAL": "3600"})  # never commits
    first.wait_for(lambda s: s.get("events", 0) >= len(events) // 3, 120, "a third of the events scored")
    first.kill()
    applied = first.status()["events"]  # reported only once the batch's state was in the changelog
    assert applied < len(events), "killed too late to be mid-stream"

    second = Worker(tmp_path / "second", model, env)

    def accounted(worker: Worker) -> int:  # its status file is rewritten on a timer, so it may trail the commit
        return worker.status().get("events", 0) + worker.status().get("duplicates", 0)

    try:
        wait_on([second], lambda: caught_up(kafka_bootstrap, names, second) and accounted(second) >= len(events), 120, "the second worker to catch up")
    finally:
        assert second.stop() == 0, second.tail()

    # It re-read everything from offset 0 and dropped what the first worker had applied.
    status = second.status()
    assert status["duplicates"] >= applied > 0
    assert status["events"] + status["duplicates"] == len(events)
    seen = max_events_seen(first.store)
    seen.update({cid: n for cid, n in max_events_seen(second.store).items() if n > seen.get(cid, 0)})
    counts = Counter(e["client_id"] for e in events)
    assert seen == counts  # events_seen continued from the changelog: no event lost or counted twice
    published = Counter((d["client_id"], d["action"], d["events_seen"]) for d in decisions_on_topic(kafka_bootstrap, names))
    assert set(published) == expected  # no decision lost or changed
    # A decision is published twice only if the batch in flight when the worker died made it.
    assert sum(published.values()) - len(published) <= BATCH_SIZE

    # Every accepted event is in ClickHouse, each once per store. The one batch in flight may
    # have reached the first worker's store without reaching its changelog, so the second
    # stored it again (in production one store, whose replacing merge tree keeps one row).
    stored = [
        Counter(r for (r,) in store_query(worker.store, "SELECT request_id FROM clonewatch.access_events"))
        for worker in (first, second)
    ]
    assert all(max(ids.values()) == 1 for ids in stored)
    assert set(stored[0]) | set(stored[1]) == {e["request_id"] for e in events}
    assert len(set(stored[0]) & set(stored[1])) <= BATCH_SIZE


def test_two_workers_split_the_partitions(kafka_bootstrap: str, tmp_path: Path, model: Path, traffic, expected) -> None:
    events, _ = traffic
    names = Names.fresh("pair")
    env = names.env(kafka_bootstrap)
    workers = [Worker(tmp_path / f"worker{i}", model, env) for i in (1, 2)]
    try:
        wait_until(
            lambda: sum(w.status().get("partitions", 0) for w in workers) == 4 and all(w.status().get("partitions") for w in workers),
            90, "both workers to hold partitions",
        )  # fmt: skip
        log = tmp_path / "access.log"
        write_log(log, events)
        ship(log, names, kafka_bootstrap)
        wait_on(workers, lambda: all(caught_up(kafka_bootstrap, names, w) for w in workers), 120, "every event scored")
    finally:
        stop_together(workers)

    assert all(w.status()["events"] > 0 for w in workers)
    assert sum(w.status()["events"] for w in workers) == len(events)  # each wrote its status once more as it stopped
    assert as_set(decisions_on_topic(kafka_bootstrap, names)) == expected
    seen: dict[str, int] = {}
    for worker in workers:
        for cid, n in max_events_seen(worker.store).items():
            seen[cid] = max(n, seen.get(cid, 0))
    assert seen == Counter(e["client_id"] for e in events)


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_shipper_and_worker_ride_out_a_broker_outage(tmp_path: Path, model: Path, traffic, expected, how: str) -> None:
    """The broker goes away mid-stream, stopped cleanly or killed with SIGKILL (its logs then
    recovered on restart), while the gateway keeps logging: nothing is lost or counted twice."""
    events, _ = traffic
    half = len(events) // 2
    broker = LocalBroker(tmp_path / "kafka")  # its own broker: the session's stays up
    broker.start()
    try:
        names = Names.fresh("outage")
        env = names.env(broker.bootstrap)
        log = tmp_path / "access.log"
        write_log(log, events[:half])
        shipper = Background(["ship", "--file", str(log)], env, tmp_path / "ship.log")
        worker = Worker(tmp_path / "worker", model, env)
        try:
            worker.wait_for(lambda s: s.get("events", 0) >= half, 120, "the first half scored")
            if how == "killed":
                os.kill(broker.pid, signal.SIGKILL)
                wait_until(lambda: not broker.is_running(), 30, "the broker to die")
            else:
                broker.stop()
            write_log(log, events[half:], mode="a")  # the gateway keeps logging meanwhile
            time.sleep(3)
            LocalBroker(broker.data_dir, broker.port, broker.controller_port).start()
            wait_on([worker], lambda: caught_up(broker.bootstrap, names, worker) and worker.status().get("events", 0) >= len(events), 180, "the second half scored")
            assert shipper.alive(), shipper.tail()
        finally:
            shipper.stop()
            assert worker.stop() == 0, worker.tail()
        assert as_set(decisions_on_topic(broker.bootstrap, names)) == expected
    finally:
        restarted = LocalBroker.attach(broker.data_dir)
        if restarted is not None:
            restarted.stop()
    assert max_events_seen(worker.store) == Counter(e["client_id"] for e in events)


@pytest.fixture(scope="module")
def campaign_traffic(tmp_path_factory) -> tuple[Path, list[dict], set[str], set[str]]:
    """A numeric API's customers and one operator's 24 keys (tests/test_campaigns.py's world):
    the model file, the events, the keys, and the clients `clonewatch run` acts on."""
    from detectors import CloneDetector, fit_clone_model
    from tests.test_campaigns import World, merged, vectors_of

    world = World(seed=1)
    baseline = merged([world.customer() for _ in range(120)])
    model = fit_clone_model(baseline, vectors_of(baseline), n_estimators=100)
    model_path = model.save(tmp_path_factory.mktemp("campaign") / "campaign.cwm")
    world = World(seed=2)
    keys = world.campaign(keys=24, per_key=12)
    events = merged([world.customer() for _ in range(60)] + keys)
    reference = CloneDetector.from_model(model).process(events, vectors_of(events), {})
    expected = {d.client_id for d in reference.decisions if d.action.value != "allow"}
    bots = {key[0].client_id for key in keys}
    assert bots <= expected
    return model_path, [msgspec.to_builtins(e) for e in events], bots, expected


def campaign_consumed(bootstrap: str, names: Names) -> bool:
    return all(
        committed_everything(bootstrap, names.app_id, f"{names.app_id}-campaign-{topic}") for topic in ("facts", "verdicts")
    )  # fmt: skip


def test_two_workers_act_on_a_campaign_whose_keys_they_split(kafka_bootstrap: str, tmp_path: Path, campaign_traffic) -> None:
    """24 keys of one operator, each under every per-client threshold, land on both workers'
    partitions; the campaign stage, on whichever worker holds the facts, ties them and its
    verdicts reach each member's worker: the same clients are acted on as by `clonewatch run`."""
    model_path, events, bots, expected = campaign_traffic
    names = Names.fresh("camp")
    env = names.env(kafka_bootstrap)
    workers = [Worker(tmp_path / f"worker{i}", model_path, env) for i in (1, 2)]
    try:
        wait_until(lambda: all(w.status().get("partitions") for w in workers), 90, "both workers to hold partitions")
        log = tmp_path / "access.log"
        write_log(log, events)
        ship(log, names, kafka_bootstrap)
        wait_on(workers, lambda: all(caught_up(kafka_bootstrap, names, w) for w in workers), 120, "every event scored")
        wait_on(workers, lambda: campaign_consumed(kafka_bootstrap, names), 120, "the campaign stage and its verdicts done")
    finally:
        stop_together(workers)

    acted = {d["client_id"] for d in decisions_on_topic(kafka_bootstrap, names) if d["action"] != "allow"}
    assert acted == expected
    assert sorted(w.status()["campaign_facts"] for w in workers)[0] == 0  # one stage at a time
    assert sum(w.status()["campaign_facts"] for w in workers) == len(events)
    for worker in workers:  # each worker told the members whose state it holds
        members = {c for (c,) in store_query(worker.store, "SELECT DISTINCT client_id FROM clonewatch.decisions WHERE action != 'allow'")}
        assert members & bots, "a worker acted on none of its campaign members"


def test_messages_the_consumer_passes_over_are_read_straight_from_kafka_and_processed_in_order(
    kafka_bootstrap: str, tmp_path: Path, campaign_traffic
) -> None:
    """Faust can pass over fetched messages around a rebalance without handing them to an
    agent (seen in this suite: 83 of 1,997 facts never learned though the group committed
    them all). Here its consumer is made to pass over offsets of the access topic (a
    partition's first ones, a span after processed ones, and another partition's last ones,
    with nothing after them) and of the campaign facts: the worker notices each jump, or the
    consumer standing past messages never handed on, and processes what it missed in order,
    so every event is scored once and in order, every fact learned."""
    model_path, events, _, expected = campaign_traffic
    names = Names.fresh("over")
    log = tmp_path / "access.log"
    write_log(log, events)
    ship(log, names, kafka_bootstrap)
    facts = f"{names.app_id}-campaign-facts"
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    last = consumer.end_offsets([TopicPartition(names.access, 1)])[TopicPartition(names.access, 1)] - 1
    consumer.close()
    spans = [f"{names.access}:0:0:9", f"{names.access}:0:100:139", f"{names.access}:1:{last - 4}:{last}", f"{facts}:0:500:599"]
    env = {**names.env(kafka_bootstrap), "CLONEWATCH_TEST_PASS_OVER": ",".join(spans)}
    worker = Worker(tmp_path / "worker", model_path, env, program=["tests/passing_over_worker.py"])
    try:
        wait_on([worker], lambda: caught_up(kafka_bootstrap, names, worker) and campaign_consumed(kafka_bootstrap, names), 180, "every event scored, every fact learned")
    finally:
        assert worker.stop() == 0, worker.tail()

    passed_over = [line for line in worker.log().splitlines() if "never reached this worker's agent" in line]
    assert any(f"{names.access} partition 0: 10 offsets from 0 " in line for line in passed_over), worker.tail()
    assert any(f"{names.access} partition 0: 40 offsets from 100 " in line for line in passed_over), worker.tail()
    assert any(f"{facts} partition 0: 100 offsets from 500 " in line for line in passed_over), worker.tail()
    assert f"{names.access} partition 1: offsets {last - 4} to {last} were fetched and never reached this worker's agent" in worker.log()
    status = worker.status()
    assert (status["events"], status["duplicates"], status["campaign_facts"]) == (len(events), 0, len(events))
    assert status["passed_over"] == 10 + 40 + 5 + 100
    assert max_events_seen(worker.store) == Counter(e["client_id"] for e in events)  # each event once, in its client's order
    assert {d["client_id"] for d in decisions_on_topic(kafka_bootstrap, names) if d["action"] != "allow"} == expected


def test_the_campaign_stage_is_saved_with_the_offset_it_holds_facts_up_to() -> None:
    """The stage is saved every few seconds, not after each batch; the save names the offset
    of the first fact it does not hold, and a stage loaded from it learns the facts from
    there again (undecodable ones skipped), dropping those it holds already."""
    from types import SimpleNamespace

    from clonewatch.streaming.app import StageHolder, learn_again
    from clonewatch.streaming.processing import encode_fact
    from detectors.policy import Policy
    from schemas import AccessEvent, CampaignFact

    table: dict[bytes, bytes] = {}
    processor = SimpleNamespace(detector=SimpleNamespace(model=None, policy=Policy()))
    held = StageHolder(processor, table, save_interval=3600.0)
    stage = held.stage()
    assert held.saved_up_to == 0 and held.due()  # a fresh stage holds no fact, and is saved at once
    facts = [CampaignFact(AccessEvent(ts=1795428000 + i, client_id=f"user{i % 5}", ip=f"10.0.0.{i % 5}"), events_seen=1 + i // 5) for i in range(20)]
    stage.process(facts[:10])
    held.save(stage.to_bytes(), up_to=10)
    assert table[b"manifest"] == b"1:1:10" and not held.due()

    stage.process(facts[10:15])  # learned, acknowledged, then the worker dies before the next save
    held.forget()
    restored = held.stage()
    assert restored is not stage and held.saved_up_to == 10 and held.due()
    assert len(restored.tracker) == 5 and restored._seen["user0"][0] == 2
    assert learn_again(restored, [encode_fact(f) for f in facts[5:15]] + [b"not a fact"]) == 10
    assert restored._seen == stage._seen  # the five it held were dropped, the five after the save learned
    held.save(restored.to_bytes(), up_to=15)
    assert set(table) == {b"manifest", b"2:0"}  # the older generation's chunks are gone

    table[b"manifest"] = b"2:1"  # saved by a version that saved after every batch, without an offset
    held.forget()
    held.stage()
    assert held.saved_up_to is None


def test_a_client_whose_count_started_again_is_not_taken_for_a_replay() -> None:
    """A client whose state expired after a quiet spell (--client-ttl) comes back counting from
    1: its facts are later than any the stage learned from it, so they are learned, while a
    replayed fact (a count and a time already learned) is still dropped."""
    from detectors.campaign_stage import CampaignStage
    from detectors.policy import Policy
    from schemas import AccessEvent, CampaignFact

    def fact(seen: int, ts: float) -> CampaignFact:
        return CampaignFact(AccessEvent(ts=ts, client_id="user0", ip="10.0.0.1"), events_seen=seen)

    stage = CampaignStage(None, Policy())
    assert stage.process([fact(1, 1795428000), fact(2, 1795428060), fact(3, 1795428120)]).learned == 3
    assert stage.process([fact(2, 1795428060)]).learned == 0  # replayed
    back = 1795428120 + 8 * 86400
    assert stage.process([fact(1, back), fact(2, back + 60)]).learned == 2  # back after eight quiet days
    assert stage.process([fact(1, back), fact(3, 1795428120)]).learned == 0  # replays from either life
    assert stage.process([fact(3, back + 120)]).learned == 1

    def asks(client: str, seen: int, ts: float, prompt: str, action: str = "allow") -> CampaignFact:
        return CampaignFact(AccessEvent(ts=ts, client_id=client, ip="10.0.0.9", prompt=prompt), events_seen=seen, action=action, risk=0.5)

    # a key back after a quiet spell is no fresh key: the query refused on another key ties it to nothing
    later = back + 8 * 86400
    stage.process([asks("sweep", 50, later - 60, "capital of Peru?", "throttle"), asks("sweep", 51, later - 59, "capital of Chile?", "throttle")])
    assert not stage.process([asks("user0", 1, later, "capital of Chile?")]).verdicts
    stage.process([asks("sweep", 52, later + 1, "capital of Bolivia?", "throttle")])
    assert stage.process([asks("fresh", 1, later + 60, "capital of Bolivia?")]).verdicts  # a fresh key is


def test_a_stage_that_takes_long_to_save_is_saved_less_often() -> None:
    """A big stage (hundreds of thousands of clients) is not rewritten every few seconds:
    its saves are spaced so that they take at most STAGE_SAVE_SHARE of the time."""
    import time
    from types import SimpleNamespace

    from clonewatch.streaming.app import STAGE_SAVE_SHARE, StageHolder
    from detectors.policy import Policy

    held = StageHolder(SimpleNamespace(detector=SimpleNamespace(model=None, policy=Policy())), {}, save_interval=5.0)
    data = held.stage().to_bytes()
    held.save(data, up_to=1)
    assert held.save_seconds < 0.25 and held.interval() == 5.0  # a small stage: the configured interval
    held.save(data, up_to=2, started=time.monotonic() - 3.0)  # encoding and writing it took 3 s
    assert held.save_seconds >= 3.0 and held.interval() == held.save_seconds / STAGE_SAVE_SHARE >= 60.0
    assert not held.due()


def test_a_table_changelog_made_after_the_producer_first_sent_is_still_written(kafka_bootstrap: str) -> None:
    """Seen in CI: the stage table's changelog was created after the worker's producer had
    sent elsewhere, its metadata never held it, and every save failed until the facts were
    dead-lettered. The worker now asks for a changelog's partitions before writing to it."""
    import asyncio
    import uuid

    from aiokafka import AIOKafkaProducer
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from clonewatch.streaming.app import know_partitions

    first, later = f"sent-{uuid.uuid4().hex[:8]}", f"changelog-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)

    def partition_of(producer: AIOKafkaProducer, topic: str) -> int:  # what a Faust table write does
        return producer._partition(topic, None, None, None, b"manifest", None)

    async def scenario() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            admin.create_topics([NewTopic(first, 1, 1)])
            await producer.send_and_wait(first, b"x")
            admin.create_topics([NewTopic(later, 3, 1)])
            await producer.client.force_metadata_update()
            with pytest.raises(TypeError):
                partition_of(producer, later)  # the refresh asked only for the topic it sent to
            await know_partitions(producer, later)
            return partition_of(producer, later)
        finally:
            await producer.stop()

    try:
        assert asyncio.run(scenario()) in range(3)
    finally:
        admin.delete_topics([first, later])
        admin.close()


@pytest.mark.parametrize("after", ["its last save, having committed nothing", "committing facts its one save does not hold"])
def test_the_campaign_stage_carries_on_after_its_worker_is_killed(kafka_bootstrap: str, tmp_path: Path, campaign_traffic, after: str) -> None:
    """The worker holding the stage dies mid-stream; the next one restores the stage from its
    table, learns again the facts acknowledged after its last save, drops those it holds, and
    ends where an uninterrupted run ends. Killed (1) after saving every second, never having
    committed: every fact comes again; (2) after saving once (its first batch) while its
    facts' offsets were committed far beyond: those must be read again from the save."""
    model_path, events, bots, expected = campaign_traffic
    names = Names.fresh("campkill")
    env = names.env(kafka_bootstrap)
    log = tmp_path / "access.log"
    write_log(log, events)
    ship(log, names, kafka_bootstrap)

    never_commits = after.startswith("its last save")
    first = Worker(tmp_path / "first", model_path, {
        **env, "CLONEWATCH_STAGE_SAVE_INTERVAL": "1" if never_commits else "3600",
        **({"CLONEWATCH_COMMIT_INTERVAL": "3600"} if never_commits else {}),
    })  # fmt: skip
    facts_topic = f"{names.app_id}-campaign-facts"
    if never_commits:
        first.wait_for(lambda s: s.get("campaign_facts", 0) >= len(events) // 2, 120, "half the facts learned by the stage")
    else:
        wait_until(lambda: committed_offset(kafka_bootstrap, names.app_id, facts_topic) >= len(events) // 2, 120, "half the facts committed")
    first.kill()
    learned = first.status()["campaign_facts"]
    assert learned < len(events), "killed too late to be mid-stream"

    second = Worker(tmp_path / "second", model_path, env)
    try:
        wait_on([second], lambda: caught_up(kafka_bootstrap, names, second), 120, "the second worker to catch up")
        wait_on([second], lambda: campaign_consumed(kafka_bootstrap, names), 120, "the campaign stage and its verdicts done")
    finally:
        assert second.stop() == 0, second.tail()
    restored = re.search(r"running the campaign stage: (\d+) campaigns, (\d+) clients remembered, (\d+) facts learned", second.log())
    assert restored and int(restored[2]) > 0, "started afresh, not restored"
    again = re.search(r"learned again (\d+) facts acknowledged after its last save", second.log())
    if never_commits:
        # every fact came again, some twice (a batch whose facts went out before its worker died
        # is scored again): the restored stage learns each fact its save did not hold, once
        assert again is None and int(restored[3]) + second.status()["campaign_facts"] == len(events)
    else:
        assert again and int(again[1]) >= len(events) // 2 - 256, second.tail()
    acted = {d["client_id"] for d in decisions_on_topic(kafka_bootstrap, names) if d["action"] != "allow"}
    assert acted == expected
