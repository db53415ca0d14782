"""What a Kafka listener speaks, learned in one round trip, so that a client configured for
another security protocol is told at once instead of after the bootstrap timeout.

A broker drops a client that speaks the wrong protocol without a word: kafka-python then
retries until its bootstrap timeout (30 s) and can only guess why. Two requests that every
listener answers before authentication tell the three cases apart in milliseconds:

- a TLS listener answers the plain ``ApiVersions`` request with a TLS alert record;
- a plain listener answers it, and answers ``SaslHandshake`` with ``ILLEGAL_SASL_STATE``;
- a SASL listener answers both (the handshake with its mechanisms).

Anything else (no answer, a closed connection, not Kafka) is "unknown", and the client's
own connection attempt decides as before.

>>> _tls_alert(b"\\x15\\x03\\x03\\x00\\x02"), _tls_alert(b"\\x00\\x00\\x00\\x10")
(True, False)
>>> mismatch("10.0.0.5:9093", "TLS", KafkaAuth())
'the broker at 10.0.0.5:9093 speaks TLS: set $CLONEWATCH_KAFKA_CA_FILE to its CA certificate (and, if it requires SASL, $CLONEWATCH_KAFKA_USERNAME and $CLONEWATCH_KAFKA_PASSWORD)'
>>> mismatch("10.0.0.5:9092", "PLAINTEXT", KafkaAuth()) is None
True
"""

from __future__ import annotations

import socket
import struct

from kafka.errors import KafkaError

from clonewatch.streaming.kafka_auth import ENV, KafkaAuth

API_VERSIONS, SASL_HANDSHAKE = 18, 17
ILLEGAL_SASL_STATE = 34
_CLIENT_ID = b"clonewatch-probe"


class ListenerMismatch(KafkaError):
    """The client's security settings do not fit what the listener speaks; the message says what to set."""


def check_listener(bootstrap: str, auth: KafkaAuth) -> None:
    """Raise :class:`ListenerMismatch` when the first bootstrap address that accepts
    connections speaks another protocol than ``auth`` would; do nothing when none does, or
    when the listener cannot be told."""
    listening = next((a.strip() for a in bootstrap.split(",") if accepts_connections(a)), None)
    problem = None if listening is None else mismatch(listening, listener_protocol(listening), auth)
    if problem:
        raise ListenerMismatch(problem)


def accepts_connections(address: str, timeout_s: float = 2.0) -> bool:
    """Whether something accepts TCP connections at ``host:port`` (a broker that is up but drops
    a client, for want of credentials or TLS, does; a stopped one or a wrong port does not).

    >>> accepts_connections("127.0.0.1:1"), accepts_connections("no port")
    (False, False)
    """
    try:
        with _connect(address, timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _connect(address: str, timeout_s: float) -> socket.socket:
    """A TCP connection to ``host:port`` (``[v6]:port`` too); raises OSError or ValueError."""
    host, _, port = address.strip().rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)


def _request(api_key: int, version: int, correlation_id: int, body: bytes = b"") -> bytes:
    """A Kafka request with header v1: size, api key, version, correlation id, client id."""
    payload = struct.pack(">hhih", api_key, version, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID + body
    return struct.pack(">i", len(payload)) + payload


def _tls_alert(head: bytes) -> bool:
    """Whether a reply opens like a TLS alert record (content type 21, version 3.x)."""
    return len(head) >= 2 and head[0] == 0x15 and head[1] == 0x03


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _response(sock: socket.socket, correlation_id: int) -> bytes | None:
    """The body of a response after its correlation id, or None if the reply is not one."""
    head = _read(sock, 4)
    if len(head) < 4:
        return None
    size = struct.unpack(">i", head)[0]
    if not 4 <= size <= 1 << 20:
        return None
    body = _read(sock, size)
    if len(body) < size or struct.unpack(">i", body[:4])[0] != correlation_id:
        return None
    return body[4:]


def listener_protocol(address: str, timeout_s: float = 3.0) -> str | None:
    """``"PLAINTEXT"``, ``"SASL_PLAINTEXT"`` or ``"TLS"`` (SSL or SASL_SSL: the handshake
    would tell which) for the Kafka listener at ``host:port``; None when it cannot tell."""
    try:
        with _connect(address, timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(_request(API_VERSIONS, 0, 1))
            head = sock.recv(5, socket.MSG_PEEK)
            if _tls_alert(head):
                return "TLS"
            if _response(sock, 1) is None:
                return None
            mechanism = b"SCRAM-SHA-256"
            sock.sendall(_request(SASL_HANDSHAKE, 1, 2, struct.pack(">h", len(mechanism)) + mechanism))
            body = _response(sock, 2)
    except (OSError, ValueError):
        return None
    if body is None or len(body) < 2:
        return None
    return "PLAINTEXT" if struct.unpack(">h", body[:2])[0] == ILLEGAL_SASL_STATE else "SASL_PLAINTEXT"


def mismatch(address: str, seen: str | None, auth: KafkaAuth) -> str | None:
    """Why a client with ``auth`` cannot talk to a listener that speaks ``seen``, or None."""
    user, password, ca = (f"${ENV[name]}" for name in ("username", "password", "ca_file"))
    tls, sasl = auth.ca_file is not None, auth.username is not None
    if seen == "TLS" and not tls:
        also = "" if sasl else f" (and, if it requires SASL, {user} and {password})"
        return f"the broker at {address} speaks TLS: set {ca} to its CA certificate{also}"
    if seen in ("PLAINTEXT", "SASL_PLAINTEXT") and tls:
        return f"the broker at {address} does not speak TLS there (it answered in plain Kafka): unset {ca}, or use its TLS listener"
    if seen == "SASL_PLAINTEXT" and not sasl:
        return f"the broker at {address} requires SASL authentication: set {user} and {password}"
    if seen == "PLAINTEXT" and sasl:
        return f"the broker at {address} does not use SASL on this listener: unset {user}, or use its SASL listener"
    return None
