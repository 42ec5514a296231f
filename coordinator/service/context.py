"""What every subsystem of the coordinator may use, built once in service/app.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from coordinator.broker import BrokerAuth
from coordinator.config import CoordinatorConfig
from coordinator.ingest import Ingest
from coordinator.link import CoordinatorLink
from coordinator.metrics import CoordinatorMetrics
from coordinator.signing import Signer
from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry


@dataclass
class ServiceContext:
    cfg: CoordinatorConfig
    store: Store
    registry: DeviceRegistry
    metrics: CoordinatorMetrics
    link: CoordinatorLink
    signer: Signer
    broker_auth: BrokerAuth
    ingest: Ingest
    enroll_address: Callable[[], str]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    @property
    def data_dir(self) -> Path:
        return self.cfg.data_path
