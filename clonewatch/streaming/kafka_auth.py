"""How clonewatch's Kafka clients authenticate: SASL (SCRAM or PLAIN), over TLS when given a CA.

Credentials come from the environment only, never from the command line, where any user
of the machine could read them in the process list::

    CLONEWATCH_KAFKA_USERNAME, CLONEWATCH_KAFKA_PASSWORD   the SASL user (none: no authentication)
    CLONEWATCH_KAFKA_MECHANISM                             SCRAM-SHA-256 (default), SCRAM-SHA-512 or PLAIN
    CLONEWATCH_KAFKA_CA_FILE                               a CA bundle: TLS (SASL_SSL, or SSL without a user)

The shipper, the push receiver, the workers (Faust), ``clonewatch decisions``, the API's
decision follower and the topic administration all connect with these settings.

>>> auth = KafkaAuth.from_env({"CLONEWATCH_KAFKA_USERNAME": "shipper", "CLONEWATCH_KAFKA_PASSWORD": "s3cret"})
>>> auth, auth.protocol
(KafkaAuth(username='shipper', mechanism='SCRAM-SHA-256', ca_file=None), 'SASL_PLAINTEXT')
>>> KafkaAuth().client_kwargs()
{}
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
ENV = {
    "username": "CLONEWATCH_KAFKA_USERNAME",
    "password": "CLONEWATCH_KAFKA_PASSWORD",
    "mechanism": "CLONEWATCH_KAFKA_MECHANISM",
    "ca_file": "CLONEWATCH_KAFKA_CA_FILE",
}


@dataclass(frozen=True)
class KafkaAuth:
    """SASL credentials (``username`` None: none) and an optional CA file for TLS."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    mechanism: str = "SCRAM-SHA-256"
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"${ENV['mechanism']} must be one of {', '.join(MECHANISMS)}, got {self.mechanism!r}")
        if self.username and not self.password:
            raise ValueError(f"${ENV['username']} is set but ${ENV['password']} is not")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"${ENV['ca_file']} names {self.ca_file}, which is not a file")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaAuth:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {name: environ.get(var, "").strip() or None for name, var in ENV.items()}
        values["mechanism"] = (values["mechanism"] or "SCRAM-SHA-256").upper()
        if values["ca_file"]:
            values["ca_file"] = Path(values["ca_file"])
        return cls(**values)

    @property
    def protocol(self) -> str:
        tls = self.ca_file is not None
        if self.username:
            return "SASL_SSL" if tls else "SASL_PLAINTEXT"
        return "SSL" if tls else "PLAINTEXT"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producers, consumers and admin clients."""
        kwargs: dict[str, Any] = {}
        if self.protocol != "PLAINTEXT":
            kwargs["security_protocol"] = self.protocol
        if self.username:
            kwargs.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username, sasl_plain_password=self.password)
        if self.ca_file is not None:
            kwargs["ssl_cafile"] = str(self.ca_file)
        return kwargs

    def hint(self) -> str:
        """What to add to a connection error when no credentials or no CA were given (an
        authenticating or TLS broker drops such clients without a word)."""
        missing = []
        if not self.username:
            missing.append(f"if the broker requires SASL, set ${ENV['username']} and ${ENV['password']}")
        if self.ca_file is None:
            missing.append(f"if it speaks TLS, set ${ENV['ca_file']} to its CA certificate")
        return f" ({'; '.join(missing)})" if missing else ""

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (None without authentication or TLS)."""
        import faust

        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file is not None else None
        if self.username:
            return faust.SASLCredentials(username=self.username, password=self.password, mechanism=self.mechanism, ssl_context=context)
        return faust.SSLCredentials(context) if context is not None else None
