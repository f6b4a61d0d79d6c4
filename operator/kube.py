"""The operator's port to the API server: the few calls it makes, with the client's errors
translated once, here, into what they mean to the operator.

`KubeApi` is the real one (the kubernetes client); tests of the reconciler's steps use a
recording fake of the same protocol (tests/fake_kube.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from berth.crds import GROUP, VERSION

PLURAL = "acceleratorjobs"


class ApiError(Exception):
    """The API server refused or could not answer; `message` is its own words."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class NotFound(ApiError):
    """The object is gone."""


class Conflict(ApiError):
    """A write met a newer version of the object; retried on fresh state."""


class AlreadyExists(ApiError):
    """Created before (by this process before a restart, or a peer): nothing to do."""


class Invalid(ApiError):
    """The object as written is refused (400, 422): retrying the same one cannot help."""


class Unavailable(ApiError):
    """Anything else: the server, the network or our credentials; retried later."""


class Kube(Protocol):
    def patch_job_status(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def create_service(self, namespace: str, body: Mapping[str, Any]) -> None: ...

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> None: ...

    def delete_pod(self, namespace: str, name: str) -> None: ...

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None: ...


def translate(exc: ApiException, conflict: type[ApiError] = Conflict) -> ApiError:
    """One ApiException as the error it means; `conflict`: what a 409 means for this call."""
    try:
        message = str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        message = str(exc.reason)
    kinds: dict[int, type[ApiError]] = {404: NotFound, 409: conflict, 400: Invalid, 422: Invalid}
    return kinds.get(exc.status, Unavailable)(message, exc.status)


class KubeApi:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def patch_job_status(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            got: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, body
            )
        except ApiException as exc:
            raise translate(exc) from None
        return got

    def create_service(self, namespace: str, body: Mapping[str, Any]) -> None:
        try:
            self.core.create_namespaced_service(namespace, body)
        except ApiException as exc:
            raise translate(exc, AlreadyExists) from None

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> None:
        try:
            self.core.create_namespaced_pod(namespace, body)
        except ApiException as exc:
            raise translate(exc, AlreadyExists) from None

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace)
        except ApiException as exc:
            raise translate(exc) from None

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        try:
            self.core.create_namespaced_event(namespace, body)
        except ApiException as exc:
            raise translate(exc) from None
