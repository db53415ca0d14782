"""A real single-node Apache Kafka broker for development and tests.

Kafka runs in KRaft mode (broker and controller in one JVM) from jars that Maven fetches
into a user cache, using ``pom.xml`` next to this module. Only 127.0.0.1 is ever bound.

Layout of a broker's data directory::

    server.properties   generated on every start (owner-only: it holds the broker's SASL password)
    sasl-users          with SASL, the SCRAM users created when the storage was formatted
    tls/                with TLS, a CA made for this broker (ca.pem: give it to clients) and the
                        broker's key and certificate (broker.pem, owner-only), made on first use
    logs/               Kafka's log.dirs (formatted once, so data survives restarts)
    broker.log          the JVM's stdout/stderr (log4j2 prints errors only)
    broker.json         pid and ports of the running broker, for other processes
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from clonewatch.streaming.kafka_auth import KafkaAuth

KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
SCRAM = "SCRAM-SHA-256"

_JAVA_HINT = "install a Java 17+ runtime, e.g. `apt-get install openjdk-17-jre-headless`"
_OPENSSL_HINT = "install OpenSSL, e.g. `apt-get install openssl` (it makes the local broker's TLS certificates)"
_MAVEN_HINT = "install Apache Maven, e.g. `apt-get install maven`"
_COMPLETE_MARKER = ".complete"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # Maven colours its output even with -B


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started, or stopped."""


def _require(tool: str, hint: str) -> str:
    """Return the path of an executable on PATH, or raise BrokerError with an install hint."""
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` was not found on PATH; {hint}")
    return path


def make_certificates(directory: Path, days: int = 825) -> tuple[Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it, made with ``openssl`` once.

    Returns ``(ca.pem, broker.pem)``: the CA certificate, which clients trust
    (``CLONEWATCH_KAFKA_CA_FILE``), and the broker's PKCS#8 key followed by its certificate
    chain, Kafka's PEM key store. The CA's key is deleted once it has signed: nothing else
    can be issued under it. Existing files are kept.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, keystore = directory / "ca.pem", directory / "broker.pem"
    if ca.exists() and keystore.exists():
        return ca, keystore
    openssl = _require("openssl", _OPENSSL_HINT)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(days), "-subj", "/CN=clonewatch local Kafka CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", "broker.key", "-out", "broker.csr", "-subj", f"/CN={HOST}"],
        [openssl, "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "broker.crt", "-days", str(days), "-extfile", "extensions.cnf"],
    ]  # fmt: skip
    (directory / "extensions.cnf").write_text(f"subjectAltName=IP:{HOST},DNS:localhost\nextendedKeyUsage=serverAuth\n")
    old_umask = os.umask(0o077)
    try:
        for step in steps:
            done = subprocess.run(step, cwd=directory, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BrokerError(f"openssl could not make the broker's certificates: {done.stderr.strip()[-500:]}")
        keystore.write_text((directory / "broker.key").read_text() + (directory / "broker.crt").read_text() + ca.read_text())
    finally:
        os.umask(old_umask)
    for scratch in ("ca.key", "ca.srl", "broker.key", "broker.csr", "broker.crt", "extensions.cnf"):
        (directory / scratch).unlink(missing_ok=True)
    ca.chmod(0o644)
    return ca, keystore


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clonewatch"


def fetch_jars(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Download the broker's jars with Maven, once, and return the folder holding them.

    Jars go to ``CACHE/kafka-<version>/jars``, where CACHE is ``cache_dir`` or by default
    ``$XDG_CACHE_HOME/clonewatch`` (``~/.cache/clonewatch``). A marker file written after
    Maven succeeds tells a complete folder from an interrupted download, which is redone;
    a file lock keeps concurrent callers (e.g. pytest-xdist workers) from downloading at once.
    """
    root = (cache_dir or _default_cache_dir()) / f"kafka-{version}"
    jars = root / "jars"
    marker = jars / _COMPLETE_MARKER
    if marker.exists():
        return jars
    mvn = _require("mvn", _MAVEN_HINT)
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not marker.exists():
            shutil.rmtree(jars, ignore_errors=True)
            with resources.as_file(resources.files("clonewatch.lab.kafka") / "pom.xml") as pom:
                result = subprocess.run(
                    [
                        mvn,
                        "-q",
                        "-B",
                        "dependency:copy-dependencies",
                        f"-DoutputDirectory={jars}",
                        "-DincludeScope=runtime",
                        f"-Dkafka.version={version}",
                        "-f",
                        str(pom),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            if result.returncode != 0:
                output = _ANSI_ESCAPE.sub("", result.stdout + result.stderr).strip()
                raise BrokerError(f"Maven could not fetch the Kafka {version} jars:\n{output}")
            marker.touch()
    return jars


def _free_port(exclude: int | None = None) -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (and is not ``exclude``)."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port != exclude:
            return port


def _port_in_use(port: int) -> bool:
    """True if ``port`` on 127.0.0.1 cannot be bound, e.g. because something listens there."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _new_cluster_id() -> str:
    """A random Kafka Uuid in its string form, as ``StorageTool random-uuid`` prints it."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # Kafka rejects ids that look like options
            return cluster_id


def _is_broker_process(pid: int, config: Path) -> bool:
    """True if ``pid`` is a live (not zombie) ``kafka.Kafka`` JVM started with ``config``.

    Checking the command line guards against signalling an unrelated process that reused
    the pid of a broker that died. Without /proc (macOS) only existence can be checked.
    """
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    proc = Path("/proc", str(pid))
    try:
        state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        args = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    return state != "Z" and b"kafka.Kafka" in args and os.fsencode(config) in args


class LocalBroker:
    """A single-node KRaft Kafka broker listening on 127.0.0.1, with data in ``data_dir``.

    Ports left as None are picked free on 127.0.0.1 when the object is created. Use as a
    context manager, or call :meth:`start` and :meth:`stop`. :meth:`attach` gives a handle
    on a broker that another process started in the same data directory.

    With ``users`` (name -> password) clients must authenticate with SASL/SCRAM-SHA-256 as
    one of them (``CLONEWATCH_KAFKA_USERNAME``/``PASSWORD``); the first is also the broker's
    own user. The users are created when the storage is formatted, on the first start.

    With ``tls`` the client listener speaks TLS (SASL_SSL with users, else SSL) with a
    certificate for 127.0.0.1 from a CA made for this broker (:func:`make_certificates`);
    clients trust :attr:`ca_file` (``CLONEWATCH_KAFKA_CA_FILE``).

    With ``authorize`` (users required) the broker enforces ACLs (KRaft's StandardAuthorizer):
    the first user is the only super user, every other may do only what an ACL grants it
    (``clonewatch kafka acls``). The controller listener then authenticates too (SASL/PLAIN
    as the first user), so that no anonymous connection is trusted anywhere.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        controller_port: int | None = None,
        version: str = KAFKA_VERSION,
        users: dict[str, str] | None = None,
        tls: bool = False,
        authorize: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port if port is not None else _free_port(exclude=controller_port)
        self.controller_port = (
            controller_port if controller_port is not None else _free_port(exclude=self.port)
        )
        if self.port == self.controller_port:
            raise ValueError(f"port and controller_port must differ (both {self.port})")
        self.version = version
        self.users = dict(users or {})
        if any(not name or not password or "," in name + password or "]" in name + password for name, password in self.users.items()):
            raise ValueError("SASL user names and passwords must be non-empty, without ',' or ']'")
        self.tls = tls
        if authorize and not self.users:
            raise ValueError("ACLs need SASL users: the first one is the super user")
        self.authorize = authorize
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @classmethod
    def attach(cls, data_dir: Path) -> LocalBroker | None:
        """Return a handle on the broker recorded in ``data_dir/broker.json``, or None.

        The record may be stale; check :meth:`is_running`.
        """
        state_path = Path(data_dir) / "broker.json"
        try:
            state = json.loads(state_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise BrokerError(f"{state_path} is not valid JSON: {err}") from err
        broker = cls(data_dir, state["port"], state["controller_port"], state["version"])
        broker._pid = state["pid"]
        return broker

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap_servers`` string for clients, e.g. ``"127.0.0.1:9092"``."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker JVM's pid, or None if this handle has not started or found one."""
        return self._pid

    @property
    def log_path(self) -> Path:
        """The file receiving the JVM's stdout and stderr."""
        return self.data_dir / "broker.log"

    @property
    def _config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _state_path(self) -> Path:
        return self.data_dir / "broker.json"

    @property
    def _log_dirs(self) -> Path:
        return self.data_dir / "logs"

    def is_running(self) -> bool:
        """True if this handle's broker process is alive (not necessarily ready)."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and _is_broker_process(self._pid, self._config_path)

    def start(self, timeout: float = 60, *, detach: bool = False) -> None:
        """Start the broker and return once clients can list topics.

        Fetches the jars and formats the storage on first use. With ``detach`` the JVM runs
        in its own session, so it outlives the calling process and its terminal. On failure
        or timeout the JVM is stopped and BrokerError raised with the end of its log.
        """
        if self.is_running():
            raise BrokerError(f"this broker is already running (pid {self._pid})")
        recorded = LocalBroker.attach(self.data_dir)
        if recorded is not None and recorded.is_running():
            raise BrokerError(
                f"a broker is already running from {self.data_dir} "
                f"at {recorded.bootstrap} (pid {recorded.pid})"
            )
        java = _require("java", _JAVA_HINT)
        jars = fetch_jars(self.version)
        for port in (self.port, self.controller_port):
            if _port_in_use(port):
                raise BrokerError(f"{HOST}:{port} is already in use; choose another port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            make_certificates(self._tls_dir)
        self._config_path.touch(mode=0o600)
        self._config_path.chmod(0o600)
        self._config_path.write_text(self._server_properties())
        if not (self._log_dirs / "meta.properties").exists():
            self._format_storage(java, jars)
        self._check_users()
        with self.log_path.open("ab") as log:
            log.write(f"--- clonewatch: starting Kafka {self.version} at {time.ctime()}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [
                    java,
                    "-Xms256m",
                    "-Xmx512m",
                    "-cp",
                    str(jars / "*"),
                    "kafka.Kafka",
                    str(self._config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        self._pid = self._proc.pid
        try:
            self._write_state()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it has not exited after ``timeout`` s.

        Does nothing if it is not running. Exit code 143 after SIGTERM is Kafka's normal exit.
        """
        if self._pid is not None and self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGTERM)
            if not self._wait_exit(timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
                if not self._wait_exit(5):
                    raise BrokerError(f"Kafka (pid {self._pid}) survived SIGKILL")
        self._forget()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate clients trust, with TLS (made when the broker first starts)."""
        return self._tls_dir / "ca.pem" if self.tls else None

    @property
    def _tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def _own_auth(self) -> KafkaAuth:
        """The broker's own (first) user, over TLS if it speaks it (its CA must exist by then)."""
        name, password = next(iter(self.users.items())) if self.users else (None, None)
        return KafkaAuth(username=name, password=password, mechanism=SCRAM, ca_file=self.ca_file)

    @property
    def client_security(self) -> dict[str, str]:
        """kafka-python settings to connect as the broker's own (first) user, over TLS if it
        speaks it; empty without SASL and TLS."""
        return self._own_auth.client_kwargs()

    def _server_properties(self) -> str:
        listener = self._own_auth.protocol  # its clients' protocol is the listener's
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}",
            "listeners": f"{listener}://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"{listener}://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
            "log.dirs": str(self._log_dirs),
            "num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }
        if self.users:
            name, password = next(iter(self.users.items()))
            settings |= {
                "sasl.enabled.mechanisms": SCRAM,
                "sasl.mechanism.inter.broker.protocol": SCRAM,
                f"listener.name.{listener.lower()}.{SCRAM.lower()}.sasl.jaas.config": (
                    f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{name}" password="{password}";'
                ),
            }
        if self.authorize:  # SCRAM needs the metadata the controller serves: its own listener uses PLAIN
            settings |= {
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": f"User:{name}",
                "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:SASL_PLAINTEXT",
                "sasl.mechanism.controller.protocol": "PLAIN",
                "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
                "listener.name.controller.plain.sasl.jaas.config": (
                    f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{name}" password="{password}" '
                    f'user_{name}="{password}";'
                ),
            }
        if self.tls:
            settings |= {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self._tls_dir / "broker.pem"),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self._tls_dir / "ca.pem"),
            }
        lines = ["# Generated by clonewatch.lab.kafka.broker on every start; edits are lost."]
        lines += [f"{key}={value}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"

    def _format_storage(self, java: str, jars: Path) -> None:
        result = subprocess.run(
            [
                java,
                "-cp",
                str(jars / "*"),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _new_cluster_id(),
                "-c",
                str(self._config_path),
                "--standalone",
                *(arg for name, password in self.users.items() for arg in ("--add-scram", f"{SCRAM}=[name={name},password={password}]")),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise BrokerError(f"formatting Kafka storage in {self._log_dirs} failed:\n{output}")
        self._users_path.write_text("".join(f"{name}\n" for name in self.users))

    @property
    def _users_path(self) -> Path:
        return self.data_dir / "sasl-users"

    def _check_users(self) -> None:
        """SCRAM users exist only if the storage was formatted with them."""
        known = set(self._users_path.read_text().split()) if self._users_path.exists() else set()
        if set(self.users) - known:
            missing = ", ".join(sorted(set(self.users) - known))
            raise BrokerError(f"{self.data_dir} was formatted without the SASL user(s) {missing}; start with a fresh data directory")
        if known and not self.users:
            raise BrokerError(f"{self.data_dir} was formatted for SASL users ({', '.join(sorted(known))}); start it with them")

    def _accepts_clients(self) -> bool:
        """True once the port is open and a real admin client can list topics."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1):
                pass
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="clonewatch-readiness",
                bootstrap_timeout_ms=5000,
                request_timeout_ms=5000,
                **self.client_security,
            )
        except (OSError, KafkaError):
            return False
        try:
            admin.list_topics()
        except KafkaError:
            return False
        finally:
            admin.close()
        return True

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while not self._accepts_clients():
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with code {self._proc.returncode} while starting; "
                    f"end of {self.log_path}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Kafka was not ready after {timeout:g} s; "
                    f"end of {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.2)

    def _wait_exit(self, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _write_state(self) -> None:
        state = {
            "pid": self._pid,
            "port": self.port,
            "controller_port": self.controller_port,
            "version": self.version,
            "bootstrap": self.bootstrap,
        }
        scratch = self._state_path.with_suffix(".json.tmp")
        scratch.write_text(json.dumps(state, indent=2) + "\n")
        scratch.replace(self._state_path)

    def _forget(self) -> None:
        """Drop this handle's process and remove broker.json if it records that process."""
        recorded = LocalBroker.attach(self.data_dir)
        if recorded is not None and recorded.pid == self._pid:
            self._state_path.unlink(missing_ok=True)
        self._proc = None
        self._pid = None
