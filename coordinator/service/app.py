"""One place that wires the coordinator: config -> store -> registry -> gRPC APIs -> MQTT link -> metrics."""
from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc

from coordinator.api.admin import AdminService
from coordinator.api.enrollment import EnrollmentService
from coordinator.auth import TOKEN_FILE, AdminTokenInterceptor, load_admin_token
from coordinator.broker import BrokerAuthError, make_broker_auth
from coordinator.config import CoordinatorConfig
from coordinator.ingest import Ingest
from coordinator.link import CoordinatorLink
from coordinator.metrics import CoordinatorMetrics, DeviceStateCollector
from coordinator.service.context import ServiceContext
from coordinator.signing import Signer
from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry
from edgefleet.v1 import admin_pb2_grpc

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    pass


class Coordinator:
    def __init__(self, cfg: CoordinatorConfig):
        self.cfg = cfg
        data = cfg.data_path
        try:
            data.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the data directory {data}: {exc}") from None
        self.admin_token = load_admin_token(data)
        self.token_path = data / TOKEN_FILE
        self.signer = Signer.load_or_create(data)
        self.store = Store(cfg.store_url)
        self.registry = DeviceRegistry(self.store)
        self.metrics = CoordinatorMetrics()
        self.metrics.registry.register(DeviceStateCollector(self.registry.count_by_state))
        self.broker_auth = make_broker_auth(cfg.broker_auth, cfg.mqtt)
        self.ingest = Ingest(self.registry, self.metrics)
        self.link = CoordinatorLink(
            cfg.mqtt, self.ingest.handle, take=self.ingest.take, on_state=lambda up: self.metrics.broker_connected.set(1 if up else 0)
        )
        self.grpc_server: grpc.Server | None = None
        self.grpc_port = 0
        self._metrics_server = None
        self.metrics_port = 0
        self.stopped = threading.Event()

    def start(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="grpc"),
            interceptors=[AdminTokenInterceptor(self.admin_token, self.token_path)],
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        # Bind first: with port 0 the enroll command can only name the port once it is known.
        try:
            self.grpc_port = server.add_insecure_port(self.cfg.server.grpc_address)
        except RuntimeError as exc:
            raise StartupError(f"cannot listen on {self.cfg.server.grpc_address} for gRPC: {exc}") from None
        if not self.grpc_port:
            raise StartupError(f"cannot listen on {self.cfg.server.grpc_address} for gRPC (address in use?)")
        self.ctx = ServiceContext(
            cfg=self.cfg,
            store=self.store,
            registry=self.registry,
            metrics=self.metrics,
            link=self.link,
            signer=self.signer,
            broker_auth=self.broker_auth,
            ingest=self.ingest,
            enroll_address=self._enroll_address,
        )
        self.admin = AdminService(self.ctx)
        admin_pb2_grpc.add_AdminServicer_to_server(self.admin, server)
        admin_pb2_grpc.add_EnrollmentServicer_to_server(EnrollmentService(self.registry, self.cfg.mqtt, self.signer, self.broker_auth), server)
        server.start()
        self.grpc_server = server
        if self.cfg.server.metrics_address:
            self._start_metrics()
        if self.cfg.mqtt.username and hasattr(self.broker_auth, "ensure_coordinator_account"):
            try:
                self.broker_auth.ensure_coordinator_account(self.cfg.mqtt.username, self.cfg.mqtt.password)
            except BrokerAuthError as exc:
                log.warning("could not ensure the coordinator's broker account: %s", exc)
        self.admin.start()
        # The admin API works while the broker is down; the link keeps retrying and logs that it does.
        self.link.start()
        log.info(
            "coordinator up: gRPC %s, metrics %s, store %s, broker %s (MQTT %s), admin token in %s",
            self.grpc_address,
            self.cfg.server.metrics_address or "off",
            self.store.backend,
            self.link.address,
            self.cfg.mqtt.protocol,
            self.token_path,
        )

    @property
    def grpc_address(self) -> str:
        host = self.cfg.server.grpc_address.rsplit(":", 1)[0]
        return f"{host}:{self.grpc_port}"

    def _enroll_address(self) -> str:
        if self.cfg.server.public_address:
            return self.cfg.server.public_address
        return self.grpc_address

    def _start_metrics(self) -> None:
        from prometheus_client import start_http_server

        host, _, port = self.cfg.server.metrics_address.rpartition(":")
        try:
            result = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.metrics.registry)
        except OSError as exc:
            raise StartupError(f"cannot listen on {self.cfg.server.metrics_address} for /metrics: {exc}") from None
        self._metrics_server = result[0] if isinstance(result, tuple) else None
        if self._metrics_server is not None:
            self.metrics_port = self._metrics_server.server_address[1]

    def stop(self) -> None:
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=2).wait(5)
        self.link.stop()  # drain what the link still holds into the areas' writers first
        if self.grpc_server is not None:
            self.admin.stop()
        self.broker_auth.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.store.close()
        self.stopped.set()
