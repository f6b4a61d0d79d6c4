"""Test-side helpers over the real control plane: a client, namespaces, simulated nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client, config

from e2e.cluster.controlplane import ControlPlane, create_simulated_nodes

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 30, what: str = "") -> T:
    """Poll until `check` returns something truthy; fail with `what` after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


class Cluster:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.kubeconfig = plane.kubeconfig
        self.api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        self.core = client.CoreV1Api(self.api)

    def namespace(self, name: str) -> str:
        """Create a namespace and wait for its default ServiceAccount (pods need it)."""
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

        def has_account() -> bool:
            accounts = self.core.list_namespaced_service_account(name).items
            return any(a.metadata.name == "default" for a in accounts)

        eventually(has_account, what=f"ServiceAccount default in {name}")
        return name

    def add_nodes(self, description: dict[str, Any]) -> list[str]:
        """Create the description's nodes for kwok to run; wait until they are Ready."""
        names = create_simulated_nodes(self.core, description)

        def all_ready() -> bool:
            ready = 0
            for node in self.core.list_node(label_selector="type=kwok").items:
                conditions = node.status.conditions or []
                ready += any(c.type == "Ready" and c.status == "True" for c in conditions)
            return ready >= len(names)

        eventually(all_ready, what=f"nodes {names} Ready")
        return names
