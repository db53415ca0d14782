"""The command line end to end, as a user runs it: each command in its own process."""

import gzip
import json
import os
import random
import re
import subprocess
import sys

import pytest

from tests.streaming_support import REPO_ROOT


def clonewatch(*args: str, cwd, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "clonewatch", *args], cwd=cwd, input=stdin, capture_output=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"clonewatch {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A small benign baseline (~48 clients) and a log with a distillation sweep and a prober, each
    sending a few hundred queries, among ~30 benign clients."""
    d = tmp_path_factory.mktemp("cli")
    clonewatch("simulate", "--scenario", "benign", "--seed", "5", "--scale", "0.3", "--out", "baseline", cwd=d)
    clonewatch("simulate", "--scenario", "demo", "--seed", "6", "--scale", "0.7", "--out", "traffic", cwd=d)
    events = (d / "traffic" / "events.jsonl").read_bytes()
    bad = b'this is not json\n{"ts": 1795428000}\n{"ts": 1795428000, "client_id": "k", "features": [NaN]}\n'
    (d / "mixed.jsonl").write_bytes(bad[:17] + events + bad[17:])
    return d


def test_train_then_run_flags_the_attackers_and_spares_benign_clients(workdir):
    train = clonewatch("train", "--input", "baseline/events.jsonl", "--model", "model.cwm", cwd=workdir)
    assert "saved to model.cwm" in train.stdout.decode()
    # Off a terminal (a log, CI) progress is whole lines, not a bar redrawn with carriage returns.
    log = train.stderr.decode()
    assert "\r" not in log and re.search(r"^embedding: [\d,]+ ev.*, 100% of the input\]$", log, re.M) and re.search(r"^fitting: (\d+)/\1 steps", log, re.M), log
    out = clonewatch("run", "--input", "mixed.jsonl", "--model", "model.cwm", "--store", "chdb://./store", "--embedding-cache", "vectors.sqlite", "-q", cwd=workdir)
    summary = out.stdout.decode()
    assert "rejected 3" in summary and "riskiest clients" in summary and "clonewatch sql" in summary

    labels = [json.loads(line) for line in (workdir / "traffic" / "labels.jsonl").read_text().splitlines()]
    attackers = {l["client_id"] for l in labels if l["label"] == "attack"}
    benign = {l["client_id"] for l in labels if l["label"] == "benign"}
    decisions = [json.loads(line) for line in (workdir / "clonewatch-out" / "decisions.jsonl").read_text().splitlines()]
    assert decisions and all(set(d) == {"client_id", "ts", "risk", "action", "events_seen", "reasons"} for d in decisions)
    flagged = {d["client_id"] for d in decisions if d["action"] != "allow"}
    assert attackers <= flagged, f"missed attackers: {attackers - flagged}"
    # A small baseline cannot know every benign habit; the benchmark measures false positives at size.
    assert len(flagged & benign) <= len(benign) // 5, f"benign clients flagged: {flagged & benign}"
    assert not {d["client_id"] for d in decisions if d["action"] == "deny"} & benign

    dead = [json.loads(line) for line in (workdir / "clonewatch-out" / "dead-letters.jsonl").read_text().splitlines()]
    assert [d["line"] for d in dead][:1] == [1] and len(dead) == 3
    assert any("client_id" in d["reason"] for d in dead) and any("NaN" in d["reason"] for d in dead)

    sql = clonewatch("sql", "SELECT count() AS n, countIf(action = 'deny') AS denies FROM clonewatch.decisions", "--store", "chdb://./store", cwd=workdir)
    assert f"{len(decisions)}" in sql.stdout.decode().splitlines()[2]
    # Scriptable: the engine's own FORMAT, values bound by the engine, errors on stderr.
    first = decisions[0]["client_id"]
    exported = clonewatch("sql", "SELECT client_id, action FROM clonewatch.decisions WHERE client_id = {c:String} ORDER BY ts FORMAT JSONEachRow",
                          "--param", f"c={first}", "--store", "chdb://./store", cwd=workdir)  # fmt: skip
    rows = [json.loads(line) for line in exported.stdout.decode().splitlines()]
    assert rows and {r["client_id"] for r in rows} == {first}
    assert [r["action"] for r in rows] == [d["action"] for d in decisions if d["client_id"] == first]
    bad_sql = clonewatch("sql", "SELEC oops", "--store", "chdb://./store", cwd=workdir, check=False)
    assert bad_sql.returncode == 1 and b"query failed" in bad_sql.stderr and not bad_sql.stdout


def test_train_cuts_prompts_where_told_and_scoring_follows_the_model(workdir):
    from detectors import CloneModel

    lines = (workdir / "baseline" / "events.jsonl").read_text().splitlines()[:800]
    (workdir / "small.jsonl").write_text("\n".join(lines) + "\n")
    clonewatch("train", "--input", "small.jsonl", "--model", "short.cwm", "--max-tokens", "64", "-q", cwd=workdir)
    assert CloneModel.load(workdir / "short.cwm").metadata["embedder"] == {"backend": "torch", "max_tokens": 64, "name": "minilm-torch-64"}
    out = clonewatch("run", "--input", "small.jsonl", "--model", "short.cwm", "--store", "chdb://./short-store", "-q", cwd=workdir)
    assert b"prompts embedded with minilm-torch-64" in out.stdout
    refused = clonewatch("train", "--input", "small.jsonl", "--model", "x.cwm", "--max-tokens", "512", cwd=workdir, check=False)
    assert refused.returncode == 2 and b"--max-tokens is a whole number from 8 to 256" in refused.stderr


def test_run_reads_stdin_and_fits_on_its_own_warmup_without_a_model(workdir):
    events = (workdir / "traffic" / "events.jsonl").read_bytes()
    # The same traffic as the run above: with its --embedding-cache, no prompt is embedded again.
    out = clonewatch("run", "--input", "-", "--warmup", "500", "--store", "chdb://./store-stdin", "--decisions", "d2.jsonl",
                     "--embedding-cache", "vectors.sqlite", "-q", cwd=workdir, stdin=events)  # fmt: skip
    summary = out.stdout.decode()
    assert "fitted on the first" in summary and "train on known-good" in summary  # and what that means
    lines = events.count(b"\n")
    assert f"events accepted   {lines:,}" in summary
    cached = re.search(r"\(([\d,]+) of ([\d,]+) distinct prompts from the cache\)", summary)
    assert cached, summary
    if (workdir / "clonewatch-out" / "decisions.jsonl").exists():  # the run above went first, and filled the cache
        assert cached[1] == cached[2] != "0"


def test_help_and_the_shipper_start_without_the_detection_engines():
    """`--help`, `ship`, `receive` and `sql` must not load scikit-learn, SciPy or torch: a shipper
    beside every gateway would pay seconds and hundreds of megabytes for nothing."""
    probe = (
        "import sys\n"
        "from clonewatch.cli import build_parser\n"
        "build_parser()\n"
        "import ingest.shipper, ingest.receiver, clonewatch.commands.sql\n"
        "print(sorted({'torch', 'sklearn', 'scipy', 'sentence_transformers'} & {m.split('.')[0] for m in sys.modules}))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    assert loaded.stdout.decode().strip() == "[]"


def test_ship_takes_its_log_file_as_an_argument(tmp_path):
    """`clonewatch ship access.log`, as a new user types it, is `--file access.log`."""
    missing = clonewatch("ship", "access.log", "--once", cwd=tmp_path, check=False)
    assert missing.returncode == 2 and b"log file access.log does not exist" in missing.stderr
    (tmp_path / "old.log").write_bytes(gzip.compress(b'{"ts": 1795428000, "client_id": "k"}\n'))
    compressed = clonewatch("ship", "old.log", "--once", cwd=tmp_path, check=False)
    assert compressed.returncode == 2 and b"zcat old.log | clonewatch ship -" in compressed.stderr
    neither = clonewatch("ship", cwd=tmp_path, check=False)
    assert neither.returncode == 2 and b"give one log file (FILE or --file FILE) or -" in neither.stderr


def test_a_rotated_gzip_log_is_read_and_a_truncated_one_says_where_it_ends(tmp_path, capsys):
    from clonewatch.inputs import open_lines

    lines = [f'{{"n": {i}, "prompt": "question {i * 7919 % 10007}"}}\n'.encode() for i in range(20_000)]
    data = gzip.compress(b"".join(lines))
    (tmp_path / "access.log.1").write_bytes(data)  # as logrotate leaves it: the name says nothing
    with open_lines(str(tmp_path / "access.log.1")) as got:
        assert list(got) == lines and got.share_read() == 1.0
    # How far through a rotated log the reading is: the share of its compressed bytes read,
    # measured on a log of a few MB, since reads go in buffers of up to 256 KB (clickhouse-connect
    # sets io.DEFAULT_BUFFER_SIZE so when imported: a 100 KB log was read whole at once in CI).
    noise = random.Random(0)
    big = [f'{{"n": {i}, "prompt": "{noise.getrandbits(256):064x}"}}\n'.encode() for i in range(60_000)]
    (tmp_path / "big.log.1").write_bytes(gzip.compress(b"".join(big)))
    with open_lines(str(tmp_path / "big.log.1")) as got:
        reading = iter(got)
        first_tenth = [next(reading) for _ in range(len(big) // 10)]
        assert 0.0 < got.share_read() < 0.5, got.share_read()
        assert first_tenth + list(reading) == big and got.share_read() == 1.0
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    with open_lines(str(tmp_path / "cut.gz")) as got:
        read = list(got)
    assert 0 < len(read) < len(lines) and read == lines[: len(read)]
    assert f"ends early after {len(read):,} lines" in capsys.readouterr().err


def test_train_reads_a_gateway_log_as_run_does(tmp_path):
    """A baseline day is usually the gateway's own log: train reads every format run reads,
    here nginx's, gzip-compressed as logrotate leaves it."""
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress((REPO_ROOT / "tests" / "data" / "nginx-json.log").read_bytes()))
    train = clonewatch("train", "--input", "access.log.1.gz", "--model", "m.cwm", "-q", cwd=tmp_path)
    assert "on 6 events from 2 clients" in train.stdout.decode() and "0 lines rejected" in train.stdout.decode()
    (tmp_path / "junk.log").write_bytes(b"not a log line\n")
    junk = clonewatch("train", "--input", "junk.log", "--model", "j.cwm", cwd=tmp_path, check=False)
    assert junk.returncode == 1 and b"line 1: no log format clonewatch reads" in junk.stderr


def test_a_store_held_by_another_process_names_it(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from sinks.clickhouse import ClickHouseStore; store = ClickHouseStore(sys.argv[1]); print('open', flush=True); sys.stdin.read()",
         f"chdb://{tmp_path / 'store'}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == b"open\n"
        held = clonewatch("sql", "SELECT 1", "--store", f"chdb://{tmp_path / 'store'}", cwd=tmp_path, check=False)
    finally:
        holder.communicate(b"", timeout=60)
    assert held.returncode == 2 and f"process {holder.pid} holds this embedded store".encode() in held.stderr
    assert b"stop it, or share the data through a ClickHouse server" in held.stderr
    assert clonewatch("sql", "SELECT 1", "--store", f"chdb://{tmp_path / 'store'}", cwd=tmp_path).returncode == 0  # released on exit


def test_user_errors_are_clear_and_do_not_crash(workdir):
    missing = clonewatch("run", "--input", "nope.jsonl", cwd=workdir, check=False)
    assert missing.returncode == 2 and b"nope.jsonl does not exist" in missing.stderr
    bad_model = clonewatch("run", "--input", "mixed.jsonl", "--model", "traffic/events.jsonl", cwd=workdir, check=False)
    assert bad_model.returncode == 2 and b"not a clonewatch model" in bad_model.stderr
    (workdir / "elsewhere").mkdir(exist_ok=True)
    (workdir / "elsewhere" / "metadata").mkdir(exist_ok=True)  # looks like a store to the hint
    mistyped = clonewatch("sql", "SELECT 1", "--store", "chdb://./stor", cwd=workdir, check=False)
    assert mistyped.returncode == 2 and b"no store at stor; stores found here:" in mistyped.stderr and b"chdb://./elsewhere" in mistyped.stderr
    assert not (workdir / "stor").exists()  # a mistyped path is not a new, empty store
    (workdir / "ingress.log").write_bytes(b"".join((REPO_ROOT / "tests/data/knative-queue-proxy.log").read_bytes().splitlines(keepends=True)[:2]))
    behind_ingress = clonewatch("run", "--input", "ingress.log", cwd=workdir, check=False)
    assert behind_ingress.returncode != 0 and b"comes from one client (the address 10.244.0.17" in behind_ingress.stderr
    assert b"log the client's forwarded address or its API key" in behind_ingress.stderr and b"Traceback" not in behind_ingress.stderr
    (workdir / "empty.log").write_bytes(b"")
    empty = clonewatch("run", "--input", "empty.log", "--store", "chdb://./empty-store", "-q", cwd=workdir)
    assert b"empty.log held no lines to read" in empty.stderr and b"model             none: no events to fit one on" in empty.stdout
    helped = clonewatch("--help", cwd=workdir)
    for command in (b"run", b"train", b"sql", b"simulate", b"kafka"):
        assert command in helped.stdout


def test_thread_pools_are_sized_to_the_cpus_the_process_may_use(monkeypatch) -> None:
    """A container held to one CPU gets pools of one thread (torch's included, already
    started); pools the environment sizes are left as they are."""
    import joblib
    import torch

    from clonewatch.threads import POOL_VARIABLES, fit_threads_to_cpus

    threads = torch.get_num_threads()
    monkeypatch.setattr(joblib, "cpu_count", lambda: 1)
    for variable in POOL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    torch.set_num_threads(2)
    try:
        assert fit_threads_to_cpus() == 1
        assert [os.environ[v] for v in POOL_VARIABLES] == ["1", "1", "1"] and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(2)
        fit_threads_to_cpus()
        assert os.environ["OMP_NUM_THREADS"] == "3" and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_the_summary_says_when_a_log_carries_no_request_bodies() -> None:
    """A log without bodies (nginx combined, Caddy, HAProxy, AWS) is judged on rate and shape
    only; the run summary says so, and says nothing when most events carry a query."""
    from clonewatch.report import render_summary
    from clonewatch.runner import RunConfig, RunSummary
    from schemas import AccessEvent

    config = RunConfig(input="access.log")
    assert "0 of 7 requests carry a prompt or features" in render_summary(RunSummary(accepted=7, with_query=0), config)
    assert "carry a prompt or features" not in render_summary(RunSummary(accepted=7, with_query=6), config)
    # health checks are no client's requests: 6 of the 7 others carry a query
    with_checks = render_summary(RunSummary(accepted=107, with_query=6, probes=100), config)
    assert "carry a prompt or features" not in with_checks and "health checks     100 events" in with_checks
    # a log whose clients are all internal addresses, none named by a key: a proxy's view (an ingress, pods)
    behind = RunSummary(accepted=7, with_query=7)
    behind.identities.learn([AccessEvent(ts=1795428000, client_id=f"ip_{i}", ip=f"10.244.0.{i}") for i in range(3)])
    assert "all 3 client addresses are private" in render_summary(behind, config)
    behind.identities.learn([AccessEvent(ts=1795428000, client_id="ip_pub", ip="198.51.100.7")])
    assert "client addresses are private" not in render_summary(behind, config)
    keyed = RunSummary(accepted=7, with_query=7)
    keyed.identities.learn([AccessEvent(ts=1795428000, client_id="ip_0", ip="10.0.0.1"), AccessEvent(ts=1795428000, client_id="key_1", ip="10.0.0.2")])
    assert "client addresses are private" not in render_summary(keyed, config)
    # the format read, and whether it was guessed; nothing for canonical records
    assert "log format        envoy (guessed from the first lines" in render_summary(RunSummary(accepted=7, format="envoy"), config)
    assert "log format        envoy\n" in render_summary(RunSummary(accepted=7, format="envoy"), RunConfig(input="a.log", format="envoy"))
    assert "log format" not in render_summary(RunSummary(accepted=7, format="canonical"), config)
