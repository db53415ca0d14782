"""OpenTelemetry logs over gRPC (OTLP/gRPC, port 4317 by convention) for ``clonewatch receive``.

Istio's OpenTelemetry access log provider (``envoyOtelAls``: KServe's mesh) and Envoy's
OpenTelemetry logger with a ``grpc_service`` export over gRPC only. Each ``Export`` call is
one pushed batch, made durable exactly as an HTTP one (:meth:`PushReceiver.take`), with the
same bearer token in the call's ``authorization`` metadata. A busy receiver or a failing sink
answers ``UNAVAILABLE``, which OTLP exporters retry; a wrong token ``UNAUTHENTICATED``. With
the receiver's certificate it serves over TLS, as its HTTP side does.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from ingest.http_server import TlsFiles
from ingest.otlp import export_response, request_lines
from ingest.receiver import PushReceiver


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: PushReceiver) -> None:
        self.receiver = receiver

    def Export(self, request, context):  # noqa: N802 - the service's name for it
        metadata = dict(context.invocation_metadata())
        if not self.receiver.authorized({"Authorization": metadata.get("authorization", "")}):
            self.receiver.stats.refuse(401)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        taken = self.receiver.take(f"otlp-grpc:{context.peer()}", request_lines(request))
        if taken == 429:
            context.abort(grpc.StatusCode.UNAVAILABLE, "behind; send again later")
        if taken == 503:
            context.abort(grpc.StatusCode.UNAVAILABLE, "could not store the batch; send it again")
        return export_response(taken[1])


class OtlpGrpcReceiver:
    """A gRPC server of the OTLP logs service in front of a :class:`PushReceiver`."""

    def __init__(self, receiver: PushReceiver, host: str, port: int, max_message: int, tls: TlsFiles | None = None) -> None:
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="otlp-grpc"),
            options=[("grpc.max_receive_message_length", max_message)],
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(receiver), self.server)
        try:
            if tls is None:
                self.port = self.server.add_insecure_port(f"{host}:{port}")
            else:
                chain, key = tls.read()
                self.port = self.server.add_secure_port(f"{host}:{port}", grpc.ssl_server_credentials([(key, chain)]))
        except RuntimeError as exc:  # grpcio's answer to an address in use
            raise ValueError(f"cannot listen for OTLP/gRPC on {host}:{port}: {exc}") from None
        self.address = (host, self.port)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=5).wait()
