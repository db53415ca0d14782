"""``clonewatch kafka``: run the local development Kafka broker (start, stop, status, fetch), and
grant clonewatch's clients their ACLs on any broker (acls)."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

from clonewatch.lab.kafka.broker import KAFKA_VERSION, BrokerError, LocalBroker, fetch_jars
from clonewatch.streaming.acls import ROLES, apply_acls, grants
from clonewatch.streaming.config import StreamingConfig, add_kafka_options
from clonewatch.streaming.kafka_auth import KafkaAuth

ROLE_COMMANDS = {"shipper": "clonewatch ship and receive", "worker": "clonewatch worker", "reader": "clonewatch decisions and api"}

DEFAULT_DATA_DIR = Path("kafka-data")
DEFAULT_PORT = 9092

Command = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``kafka`` command and its subcommands to the clonewatch CLI."""
    parser = subparsers.add_parser(
        "kafka",
        help="run a local single-node Kafka broker for development",
        description=(
            f"Run a real single-node Apache Kafka {KAFKA_VERSION} broker (KRaft mode) on "
            "127.0.0.1 from Maven jars, for development. Needs Java 17+ and, the first "
            "time, Maven to download the jars."
        ),
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    start = commands.add_parser(
        "start",
        help="start the broker in the background",
        description=(
            "Start the broker detached from this terminal and return once clients can "
            "connect. Data persists in the data directory across restarts; the JVM's "
            "output goes to DATA_DIR/broker.log."
        ),
    )
    _add_data_dir(start)
    start.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="client port on 127.0.0.1 (default: %(default)s)",
    )
    start.add_argument(
        "--timeout",
        type=float,
        default=60,
        help="seconds to wait for the broker to become ready (default: %(default)s)",
    )
    start.add_argument(
        "--sasl",
        action="store_true",
        help="require SASL/SCRAM-SHA-256 from clients, as the user $CLONEWATCH_KAFKA_USERNAME with password "
        "$CLONEWATCH_KAFKA_PASSWORD (the same variables clonewatch's clients read); only on a fresh data directory",
    )
    start.add_argument(
        "--acls",
        action="store_true",
        help="with --sasl: enforce ACLs (the $CLONEWATCH_KAFKA_USERNAME user is the only super user) and create the "
        "role users shipper, worker and reader with random passwords, kept in DATA_DIR/ROLE.env for their clients; "
        "grant them with `clonewatch kafka acls --shipper shipper --worker worker --reader reader`; only on a fresh data directory",
    )
    start.add_argument(
        "--tls",
        action="store_true",
        help="speak TLS to clients, with a certificate for 127.0.0.1 from a CA made for this broker with openssl "
        "(DATA_DIR/tls/ca.pem: point $CLONEWATCH_KAFKA_CA_FILE at it)",
    )
    start.set_defaults(func=_start)

    stop = commands.add_parser(
        "stop",
        help="stop the broker",
        description="Stop the broker started from the data directory (SIGTERM, then SIGKILL).",
    )
    _add_data_dir(stop)
    stop.set_defaults(func=_stop)

    status = commands.add_parser(
        "status",
        help="tell whether the broker is running",
        description="Print whether a broker runs from the data directory; exit 0 if so, 1 if not.",
    )
    _add_data_dir(status)
    status.set_defaults(func=_status)

    fetch = commands.add_parser(
        "fetch",
        help="download the broker's jars with Maven",
        description=(
            f"Download the Kafka {KAFKA_VERSION} jars into the user cache "
            "($XDG_CACHE_HOME/clonewatch or ~/.cache/clonewatch) and print where they are. "
            "start does this itself when needed."
        ),
    )
    fetch.set_defaults(func=_fetch)

    acls = commands.add_parser(
        "acls",
        help="grant the shipper, worker and reader users what each needs, on any broker that enforces ACLs",
        description=(
            "On a broker that enforces ACLs, allow each clonewatch client what its job needs and nothing more: "
            "the shipper user (ship, receive) writes the access and dead-letter topics; the worker user reads "
            "access, writes decisions and dead letters, and owns its <app-id>-* topics and consumer group; the "
            "reader user (decisions, api) reads the decisions topic. A stolen shipper or gateway password then "
            "cannot write decisions. Connects as $CLONEWATCH_KAFKA_USERNAME, which must be allowed to alter the "
            "cluster's ACLs (a super user). Granting twice changes nothing. Topic names and the app id come from "
            "the same options and variables as the other commands."
        ),
    )
    for role in ROLES:
        acls.add_argument(f"--{role}", metavar="USER", help=f"the SASL user of the {role} ({ROLE_COMMANDS[role]})")
    add_kafka_options(acls, topics=("access", "decisions", "dead_letter"))
    acls.add_argument("--app-id", help="the workers' app id (default: $CLONEWATCH_APP_ID or clonewatch)")
    acls.add_argument("--dry-run", action="store_true", help="print the grants without connecting")
    acls.set_defaults(func=_acls)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="directory holding the broker's config, data, log and pid (default: ./%(default)s)",
    )


def _reporting_errors(command: Command) -> Command:
    """Make a BrokerError print as ``error: ...`` on stderr and exit with code 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except BrokerError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run


@_reporting_errors
def _start(args: argparse.Namespace) -> int:
    users = {}
    if args.sasl:
        auth = KafkaAuth.from_env()
        if not auth.username:
            raise BrokerError("--sasl needs $CLONEWATCH_KAFKA_USERNAME and $CLONEWATCH_KAFKA_PASSWORD")
        users = {auth.username: auth.password}
    if args.acls and not args.sasl:
        raise BrokerError("--acls needs --sasl: ACLs name authenticated users")
    if set(users) & set(ROLES):
        raise BrokerError(f"$CLONEWATCH_KAFKA_USERNAME must not be one of the role users ({', '.join(ROLES)})")
    roles = _role_passwords(args.data_dir, args.acls)
    broker = LocalBroker(args.data_dir, port=args.port, users=users | roles, tls=args.tls, authorize=args.acls)
    _write_role_files(broker, roles)  # before the start formats the storage with them: never lost
    broker.start(timeout=args.timeout, detach=True)
    security = " and ".join(name for name, on in (("SASL/SCRAM", users), ("TLS", args.tls), ("ACLs", args.acls)) if on)
    print(f"Kafka {broker.version} is running at {broker.bootstrap} (pid {broker.pid}){' with ' + security if security else ''}.")
    if broker.ca_file is not None:
        print(f"Clients trust its CA with: export CLONEWATCH_KAFKA_CA_FILE={broker.ca_file}")
    if roles:
        print(f"Role users {', '.join(roles)}, each allowed nothing until granted (as {next(iter(users))}, the super user):")
        print("  clonewatch kafka acls --shipper shipper --worker worker --reader reader")
        print(f"Their credentials: {_role_file(args.data_dir, 'ROLE')} (owner-only); e.g. (set -a; . {_role_file(args.data_dir, 'shipper')}; clonewatch ship ...)")
    print(f"Data and log: {broker.data_dir}")
    print(f"Stop it with: clonewatch kafka stop --data-dir {args.data_dir}")
    return 0


def _role_file(data_dir: Path, role: str) -> Path:
    return data_dir / f"{role}.env"


def _role_passwords(data_dir: Path, acls: bool) -> dict[str, str]:
    """The role users' passwords: those of an earlier start (SCRAM users exist from the first
    start's format on), else new random ones; none without ``acls``."""
    files = {role: _role_file(data_dir, role) for role in ROLES}
    kept = {role: _env_file(path)["CLONEWATCH_KAFKA_PASSWORD"] for role, path in files.items() if path.exists()}
    if kept and not acls:
        raise BrokerError(f"{data_dir} was started with --acls (its role users' credentials are there): start it with --acls again")
    if not acls or kept:
        return kept
    import secrets

    return {role: secrets.token_hex(16) for role in ROLES}


def _write_role_files(broker: LocalBroker, roles: dict[str, str]) -> None:
    """Each role user's client settings in DATA_DIR/ROLE.env, owner-only."""
    broker.data_dir.mkdir(parents=True, exist_ok=True)
    for role, password in roles.items():
        path = _role_file(broker.data_dir, role)
        path.touch(mode=0o600)
        path.write_text(
            f"CLONEWATCH_KAFKA_USERNAME={role}\nCLONEWATCH_KAFKA_PASSWORD={password}\n"
            + (f"CLONEWATCH_KAFKA_CA_FILE={broker.ca_file}\n" if broker.ca_file is not None else "")
        )


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@_reporting_errors
def _stop(args: argparse.Namespace) -> int:
    broker = LocalBroker.attach(args.data_dir)
    if broker is None or not broker.is_running():
        print(f"No broker is running from {args.data_dir}.")
        if broker is not None:
            broker.stop()  # clears the stale broker.json
        return 0
    pid = broker.pid
    broker.stop()
    print(f"Stopped Kafka at {broker.bootstrap} (pid {pid}).")
    return 0


@_reporting_errors
def _status(args: argparse.Namespace) -> int:
    broker = LocalBroker.attach(args.data_dir)
    if broker is None or not broker.is_running():
        print(f"Not running (data dir {args.data_dir}).")
        return 1
    print(f"Running at {broker.bootstrap} (pid {broker.pid}, data dir {broker.data_dir}).")
    return 0


@_reporting_errors
def _fetch(args: argparse.Namespace) -> int:
    print(fetch_jars())
    return 0


def _acls(args: argparse.Namespace) -> int:
    users = {role: getattr(args, role) for role in ROLES if getattr(args, role)}
    if not users:
        raise ValueError("name at least one user: --shipper, --worker or --reader")
    config = StreamingConfig.from_args(args)
    for role, user in users.items():
        for grant in grants(role, config):
            print(f"User:{user:<16} {role:<8} {grant}")
    if args.dry_run:
        return 0
    from kafka.errors import KafkaError

    from clonewatch.streaming.topics import TopicError, admin_client

    if not config.kafka_auth.username:
        raise ValueError("granting ACLs needs a user allowed to: set $CLONEWATCH_KAFKA_USERNAME and $CLONEWATCH_KAFKA_PASSWORD")
    try:
        admin = admin_client(config, purpose="acls")
    except TopicError as exc:
        print(f"clonewatch kafka acls: {exc}", file=sys.stderr)
        return 1
    try:
        granted = apply_acls(admin, users, config)
    except KafkaError as exc:
        print(f"clonewatch kafka acls: {exc} (is {config.kafka_auth.username} a super user, and does the broker enforce ACLs?)", file=sys.stderr)
        return 1
    finally:
        admin.close()
    print(f"granted {granted} ACLs at {config.bootstrap}")
    return 0
