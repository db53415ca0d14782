"""Gateway log lines as a container runtime wrote them, unwrapped.

A gateway in a container writes its access log to standard output, and the runtime wraps
every line: Kubernetes nodes (containerd, CRI-O) in the CRI log format of
``/var/log/containers/*.log``, Docker in its json-file driver's records. Both split lines
longer than 16 KB into partial lines, which are joined here before the gateway's format is
read. A log shipper that tails the gateway's file wraps each line in a record of its own
(:func:`shipped_line`: Fluent Bit, Vector, Filebeat), which is unwrapped too when the
source's first JSON line is one. Lines without a wrapper pass through untouched.

>>> lines = ContainerLines()
>>> lines.unwrap(b'2026-11-23T10:00:00.125456789Z stdout F {"msec":"1795428000.125"}')
b'{"msec":"1795428000.125"}'
>>> lines.unwrap(b'2026-11-23T10:00:00.2Z stdout P {"msec":"17954'), lines.pending
(None, True)
>>> lines.unwrap(b'2026-11-23T10:00:00.2Z stdout F 28000.2"}')
b'{"msec":"1795428000.2"}'
>>> lines.unwrap(b'{"log":"203.0.113.7 - - [23/Nov/2026:10:00:00 +0000] \\\\"GET / HTTP/1.1\\\\" 200 5\\\\n","stream":"stdout","time":"2026-11-23T10:00:00Z"}')
b'203.0.113.7 - - [23/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5'
>>> lines.unwrap(b'{"msec":"1795428000.3"}')  # not wrapped
b'{"msec":"1795428000.3"}'
>>> shipped = ContainerLines()  # Fluent Bit's file output (json_lines) of a tailed log
>>> shipped.unwrap(b'{"date":1795428000.4,"log":"{\\\\"msec\\\\":\\\\"1795428000.4\\\\"}"}')
b'{"msec":"1795428000.4"}'
"""

from __future__ import annotations

import re

import msgspec

from ingest.formats import FormatError, is_proxy_record

MAX_JOINED_BYTES = 4 * 1024 * 1024  # a line split by the runtime may not grow beyond this
UNFINISHED = "the input ends inside a line split by the container runtime (its last part never came)"  # a dead letter's reason

_CRI = re.compile(rb"^(\d{4}-\d{2}-\d{2}T\S+) (?:stdout|stderr) ([PF])\S* ?(.*)$", re.DOTALL)
_DOCKER_PREFIX = b'{"log":'


class _DockerRecord(msgspec.Struct):
    log: str
    time: str | None = None


_docker = msgspec.json.Decoder(_DockerRecord)


class ContainerLines:
    """Unwraps the lines of one source; joins the partial lines the runtime split."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._shipped: bool | None = None  # whether this source's JSON lines are a shipper's records: its first says
        self._started: str | float | None = None  # the wrapper's time of a split line's first part
        self.time: str | float | None = None  # the wrapper's time of the last line returned whole (None: no wrapper)

    @property
    def pending(self) -> bool:
        """Whether a split line has begun and not yet ended."""
        return bool(self._parts)

    def drop(self) -> bytes:
        """The parts of an unfinished split line, forgotten."""
        parts, self._parts, self._size = self._parts, [], 0
        return b"".join(parts)

    def unwrap(self, line: bytes | str) -> bytes | str | None:
        """The gateway's line inside ``line``; None while a split line is still incomplete.
        Raises FormatError for a split line that grows beyond :data:`MAX_JOINED_BYTES`.

        :attr:`time` is then the time the wrapper gave the line (that of its first part), the
        line's own time when the gateway's format has none (Knative's request log)."""
        self.time = None
        raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
        if raw[:1].isdigit():
            match = _CRI.match(raw)
            if match is not None:
                return self._joined(match[3], match[2] == b"F", match[1].decode("ascii", "replace"))
        elif raw.startswith(_DOCKER_PREFIX):
            try:
                record = _docker.decode(raw.decode("utf-8", "replace"))
                log = record.log.encode("utf-8", "surrogatepass")
            except (msgspec.DecodeError, UnicodeEncodeError):
                return line  # not a json-file record after all: let the gateway's parser say why
            complete = log.endswith(b"\n")
            return self._joined(log[:-1] if complete else log, complete, record.time)
        elif raw[:1] == b"{" and self._shipped is not False:
            inner, self.time = shipped_line_and_time(raw)
            if self._shipped is None:
                self._shipped = inner is not None
            return inner if inner is not None else line
        return line

    def _joined(self, part: bytes, complete: bool, time: str | None) -> bytes | None:
        self._size += len(part)
        if self._size > MAX_JOINED_BYTES:
            self._parts, self._size = [], 0
            raise FormatError(f"a line split by the container runtime grew beyond {MAX_JOINED_BYTES:,} bytes")
        if not self._parts:
            self._started = time
        if not complete:
            self._parts.append(part)
            return None
        whole = b"".join([*self._parts, part]) if self._parts else part
        self._parts, self._size, self.time = [], 0, self._started
        return whole.rstrip(b"\r")


def shipped_line_in(raw: bytes) -> bytes | None:
    """:func:`shipped_line` of one JSON line (None for a line that is not JSON or no wrapper)."""
    return shipped_line_and_time(raw)[0]


def shipped_line_and_time(raw: bytes) -> tuple[bytes | None, str | float | None]:
    """:func:`shipped_line_in` and the time the shipper gave the line (Fluent Bit's ``date``,
    Vector's ``timestamp``, Filebeat's ``@timestamp``), if it is a wrapper.

    >>> shipped_line_and_time(b'{"date": 1795428000.5, "log": "a line"}')
    (b'a line', 1795428000.5)
    """
    try:
        record = msgspec.json.decode(raw) if raw.lstrip()[:1] == b"{" else None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None, None
    line = shipped_line(record)
    if line is None:
        return None, None
    times = (record.get(f) for f in _SHIPPED_TIMES)
    return line, next((t for t in times if isinstance(t, (str, int, float)) and not isinstance(t, bool)), None)


_SHIPPED_FIELDS = ("log", "message")  # Fluent Bit's tail input and Docker; Vector's file source, Filebeat, syslog
_SHIPPED_TIMES = ("date", "timestamp", "@timestamp", "time")  # Fluent Bit; Vector; Filebeat; Docker's json-file


def shipped_line(record: object) -> bytes | None:
    """The gateway's log line inside a record a log shipper made of it, or None when ``record``
    is not such a wrapper: Fluent Bit's ``{"date": ..., "log": "<line>"}``, Vector's
    ``{"message": "<line>", "timestamp": ..., "host": ..., "file": ...}``, Filebeat's
    ``{"@timestamp": ..., "message": "<line>", "log": {"file": ...}}``. A record that names
    a client, an address, a method or a path itself is the gateway's own, not a wrapper.

    >>> shipped_line({"date": 1795428000.1, "log": '{"msec":"1795428000.125","http_x_api_key":"k"}'})
    b'{"msec":"1795428000.125","http_x_api_key":"k"}'
    >>> shipped_line({"message": "hello", "remote_addr": "203.0.113.7"}) is None
    True
    """
    if not isinstance(record, dict):
        return None
    line = next((record[f] for f in _SHIPPED_FIELDS if isinstance(record.get(f), str)), None)
    if line is None or is_proxy_record(record, ignore=_SHIPPED_FIELDS):
        return None
    return line.rstrip("\r\n").encode("utf-8", "surrogatepass")


def shipped_lines(document: object) -> list[bytes] | None:
    """The gateway lines of a pushed JSON document (one wrapper, or an array of them), or None
    when it is not made of wrappers (a Kong batch, a gateway's own record).

    >>> shipped_lines([{"log": "a"}, {"log": "b"}]), shipped_lines([{"log": "a"}, {"status": 200, "path": "/"}])
    ([b'a', b'b'], None)
    """
    records = document if isinstance(document, list) else [document]
    lines = [shipped_line(record) for record in records]
    return lines if lines and all(line is not None for line in lines) else None
