"""Shared fixtures: one embedder and one embedded ClickHouse path per test session, and a
certificate authority with a server certificate for the TLS tests."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from filelock import FileLock

from tests.kafka_fixture import kafka_bootstrap, kafka_broker  # noqa: F401


@pytest.fixture(scope="session")
def embedder():
    from detectors.embedding import PromptEmbedder

    return PromptEmbedder()


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory) -> str:
    """chdb holds one engine on one path per process: every in-process test shares this path."""
    return "chdb://" + str(tmp_path_factory.mktemp("chdb") / "store")


@pytest.fixture(scope="session")
def numeric_model(tmp_path_factory):
    """A model fitted on ~120 benign customers of the numeric scenario (seed 11), shared by the
    detection-rate and streaming tests."""
    from tests.streaming_support import train_numeric_model

    if "PYTEST_XDIST_WORKER" not in os.environ:
        return train_numeric_model(tmp_path_factory.mktemp("model") / "numeric.cwm")
    path = tmp_path_factory.getbasetemp().parent / "numeric.cwm"  # shared by this run's test processes
    with FileLock(f"{path}.lock"):  # the first process to need it fits it; the others wait and load it
        if not path.is_file():
            train_numeric_model(path)
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every test that was collected reports a result, or the run fails: a plugin whose items
    run otherwise would go unnoticed (schemathesis's single item with an operation per subtest
    ran only its first operation under pytest-xdist, and said 1 passed)."""
    if hasattr(session.config, "workerinput") or session.shouldfail or session.shouldstop or exitstatus not in (0, 1):
        return  # a test process of pytest-xdist (the controller counts), or a run cut short
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    outcomes = ("passed", "failed", "skipped", "xfailed", "xpassed", "error")
    reported = {report.nodeid for outcome in outcomes for report in reporter.stats.get(outcome, []) if getattr(report, "nodeid", "")}
    if len(reported) != session.testscollected:
        reporter.ensure_newline()
        reporter.write_line(f"{session.testscollected} tests collected but {len(reported)} reported a result", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> SimpleNamespace:
    """PEM files of a throwaway certificate authority (``ca``) and of a server certificate it
    signed for 127.0.0.1 and localhost (``cert``, ``key``)."""
    import trustme

    directory: Path = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    files = SimpleNamespace(ca=directory / "ca.pem", cert=directory / "cert.pem", key=directory / "key.pem")
    authority.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.cert))
    server.private_key_pem.write_to_path(str(files.key))
    return files
