"""`clonewatch ship` against the real broker: kill and restart, rotation, truncation, stdin."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ingest.formats import client_id_for_key
from tests.streaming_support import Background, Names, cli, read_topic, wait_until, write_log

pytestmark = pytest.mark.kafka


def records(first: int, count: int) -> list[dict]:
    """Canonical records without request ids (the shipper adds stable ones), numbered by seq."""
    return [
        {"ts": 1795428000 + i, "client_id": f"key_{i % 13:02d}", "features": [i % 7, 1.5], "seq": i}
        for i in range(first, first + count)
    ]


def shipped(bootstrap: str, names: Names) -> list[dict]:
    return [json.loads(value) for _, value in read_topic(bootstrap, names.access, timeout=60)]


def checkpoint(log: Path) -> dict:
    try:
        return json.loads(log.with_name(log.name + ".clonewatch-offset").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_killed_shipper_resumes_without_loss(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = Names.fresh("shipkill")
    env = names.env(kafka_bootstrap)
    log = tmp_path / "access.log"
    lines = records(0, 60_000)
    write_log(log, lines)
    size = log.stat().st_size

    first = Background(["ship", "--file", str(log), "--once", "--batch-lines", "200"], env, tmp_path / "ship1.log")
    wait_until(lambda: checkpoint(log).get("offset", 0) > 0 or not first.alive(), 60, "a first checkpoint", interval=0.01)
    first.kill()
    stopped_at = checkpoint(log)["offset"]
    assert 0 < stopped_at < size, "the shipper was not killed mid-file"

    again = cli("ship", "--file", str(log), "--once", "--batch-lines", "200", env=env)
    assert again.returncode == 0, again.stderr.decode()
    final = checkpoint(log)
    assert (final["offset"], final["line"]) == (size, len(lines))

    messages = shipped(kafka_bootstrap, names)
    assert {m["seq"] for m in messages} == {r["seq"] for r in lines}  # nothing lost
    by_id = {}
    for message in messages:  # a re-sent line carries the same request id as the first time
        assert by_id.setdefault(message["request_id"], message["seq"]) == message["seq"]
    assert len(by_id) == len(lines)
    assert all(m["request_id"].startswith(final["fingerprint"] + "-") for m in messages)


def test_follows_rotation_and_truncation(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = Names.fresh("rotate")
    log = tmp_path / "access.log"
    write_log(log, records(0, 100))
    shipper = Background(["ship", "--file", str(log)], names.env(kafka_bootstrap), tmp_path / "ship.log")
    try:
        wait_until(lambda: checkpoint(log).get("line") == 100, 60, "the first 100 lines")
        os.rename(log, tmp_path / "access.log.1")  # logrotate's default: rename, then a new file
        write_log(tmp_path / "access.log.1", records(100, 10), mode="a")  # the gateway still writes to the old file
        write_log(log, records(110, 50))
        wait_until(lambda: checkpoint(log).get("line") == 50, 60, "the new file's lines")
        log.write_text("")  # copytruncate
        write_log(log, records(160, 20), mode="a")
        wait_until(lambda: checkpoint(log).get("line") == 20, 60, "the lines after truncation")
    finally:
        assert shipper.stop() == 0, shipper.tail()

    seqs = sorted(m["seq"] for m in shipped(kafka_bootstrap, names))
    assert seqs == list(range(180))


def test_stdin_in_nginx_format(kafka_bootstrap: str) -> None:
    names = Names.fresh("stdin")
    lines = [
        json.dumps({
            "time": f"2026-11-23T10:00:0{i}+00:00", "api_key": "sk-live-4f9a", "remote_addr": "203.0.113.7",
            "method": "POST", "uri": "/v1/chat/completions", "status": "200", "request_time": "0.250",
            "request_id": "", "user_agent": "curl/8.5.0",
            "request_body": json.dumps({"model": "aurora-8b-chat", "messages": [{"role": "user", "content": f"question {i}"}]}),
        })  # fmt: skip
        for i in range(5)
    ]
    # the last line: the first part of a line Docker's json-file driver split, whose end never comes
    split = json.dumps({"log": lines[0][:40], "stream": "stdout", "time": "2026-11-23T10:00:09Z"})
    stdin = ("\n".join(lines) + "\nnot a log line\n" + split + "\n").encode()
    done = cli("ship", "-", "--format", "nginx", env=names.env(kafka_bootstrap), stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    assert "5 records, 2 dead letters" in done.stderr.decode()

    messages = shipped(kafka_bootstrap, names)
    assert sorted(m["prompt"] for m in messages) == [f"question {i}" for i in range(5)]
    assert {m["client_id"] for m in messages} == {client_id_for_key("sk-live-4f9a")}
    assert all(m["latency_ms"] == 250.0 and m["request_id"].startswith("stdin-") for m in messages)
    assert len({m["request_id"] for m in messages}) == 5
    letter, unfinished = [json.loads(v) for _, v in read_topic(kafka_bootstrap, names.dead_letters)]
    assert letter["source"] == "-" and letter["line"] == 6 and letter["reason"].startswith("not nginx combined")
    assert unfinished["line"] == 7 and "split by the container runtime" in unfinished["reason"] and unfinished["raw"] == lines[0][:40]


def test_a_restart_between_the_parts_of_a_split_line_loses_none_of_them(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Docker's json-file driver splits a long line into parts; a shipper stopped after the first
    part checkpoints before it, so the restarted shipper joins it with its last part."""
    names = Names.fresh("splitrestart")
    env = names.env(kafka_bootstrap)

    def nginx_line(i: int) -> str:
        return json.dumps({"msec": f"1795428000.{i:03d}", "api_key": "sk-live-split-0001", "remote_addr": "203.0.113.7",
                           "method": "POST", "uri": "/v1/completions", "status": "200", "request_body": json.dumps({"prompt": f"question {i} " + "x" * 50})})  # fmt: skip

    def docker(part: str, time: str) -> str:
        return json.dumps({"log": part, "stream": "stdout", "time": time}) + "\n"

    log = tmp_path / "container.log"
    whole, split = nginx_line(1), nginx_line(2)
    log.write_text(docker(whole + "\n", "2026-11-23T10:00:01Z") + docker(split[:60], "2026-11-23T10:00:02Z"))
    first_line_bytes = len(docker(whole + "\n", "2026-11-23T10:00:01Z").encode())
    shipper = Background(["ship", "--file", str(log), "--format", "nginx"], env, tmp_path / "ship1.log")
    try:
        wait_until(lambda: checkpoint(log).get("line") == 1, 60, "the first line's checkpoint")
        time.sleep(1.0)  # the shipper has read the split line's first part by now, and must not checkpoint past it
    finally:
        assert shipper.stop() == 0, shipper.tail()
    assert (checkpoint(log)["offset"], checkpoint(log)["line"]) == (first_line_bytes, 1)

    with log.open("a") as handle:
        handle.write(docker(split[60:] + "\n", "2026-11-23T10:00:02Z"))
    again = cli("ship", "--file", str(log), "--format", "nginx", "--once", env=env)
    assert again.returncode == 0, again.stderr.decode()
    prompts = sorted(m["prompt"] for m in shipped(kafka_bootstrap, names))
    assert prompts == ["question 1 " + "x" * 50, "question 2 " + "x" * 50]  # each once: the restart read from the split line on
    assert not read_topic(kafka_bootstrap, names.dead_letters, timeout=5)
