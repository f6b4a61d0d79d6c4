"""The informer on the real control plane: what it lists, what its watch brings, what it keeps
quiet about."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from berth.operator.informer import Expired, Informer
from berth.operator.state import slim_pod
from tests.kube import Cluster, eventually

pytestmark = pytest.mark.controlplane
NAMESPACES = itertools.count()


def pod(name: str) -> dict[str, Any]:
    """A pod no node matches: it stays as made, unless a test changes it."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x"}],
                     "nodeSelector": {"berth.dev/nowhere": "true"}}}  # fmt: skip


class Seen:
    def __init__(self) -> None:
        self.changes: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]] = []
        self.lock = threading.Lock()

    def __call__(self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        with self.lock:
            self.changes.append((old, new))

    def names(self) -> list[tuple[str | None, str | None]]:
        def name(obj: Mapping[str, Any] | None) -> str | None:
            return None if obj is None else str(obj["metadata"]["name"])

        with self.lock:
            return [(name(o), name(n)) for o, n in self.changes]


@pytest.fixture
def pods(control_plane: Cluster) -> Iterator[tuple[Cluster, str, Informer, Seen]]:
    ns = control_plane.namespace(f"informer-{next(NAMESPACES)}")
    control_plane.core.create_namespaced_pod(ns, pod("before"))
    informer = Informer(
        "pods",
        lambda **kw: control_plane.core.list_namespaced_pod(ns, **kw),
        slim_pod,
        lambda o: o["metadata"]["name"],
    )
    seen = Seen()
    informer.start(seen)
    try:
        yield control_plane, ns, informer, seen
    finally:
        informer.stop()
        control_plane.core.delete_namespace(ns)


def test_the_first_list_is_in_the_store_before_it_says_listed(
    pods: tuple[Cluster, str, Informer, Seen],
) -> None:
    _, _, informer, seen = pods
    assert informer.listed.wait(30)
    assert [p["metadata"]["name"] for p in informer.values()] == ["before"]
    assert seen.names()[0] == (None, None)


def test_the_watch_brings_what_is_added_changed_and_deleted(
    pods: tuple[Cluster, str, Informer, Seen],
) -> None:
    cluster, ns, informer, seen = pods
    assert informer.listed.wait(30)
    cluster.core.create_namespaced_pod(ns, pod("after"))
    eventually(lambda: ("after" in {p["metadata"]["name"] for p in informer.values()}),
               what="the new pod in the store")  # fmt: skip
    cluster.core.patch_namespaced_pod("after", ns, {"metadata": {"labels": {"a": "b"}}})
    eventually(
        lambda: any(p["metadata"]["labels"].get("a") == "b" for p in informer.values()),
        what="the label in the store",
    )
    cluster.core.delete_namespaced_pod("after", ns, grace_period_seconds=0)
    eventually(lambda: ("after", None) in seen.names(), what="the deletion told")
    assert {p["metadata"]["name"] for p in informer.values()} == {"before"}
    assert seen.names().count((None, "after")) == 1


def test_a_change_to_nothing_the_slim_copy_keeps_is_not_told(
    pods: tuple[Cluster, str, Informer, Seen],
) -> None:
    cluster, ns, informer, seen = pods
    assert informer.listed.wait(30)
    kept = informer.values()[0]
    cluster.core.patch_namespaced_pod("before", ns, {"metadata": {"annotations": {"x": "1"}}})
    cluster.core.patch_namespaced_pod("before", ns, {"metadata": {"labels": {"told": "yes"}}})
    eventually(
        lambda: any(p["metadata"]["labels"].get("told") for p in informer.values()),
        what="the label in the store",
    )
    changes = seen.names()[1:]
    assert changes == [("before", "before")]  # the label; never the annotation
    assert seen.changes[1][0] is kept


class Scripted:
    """The client's raw response to one call: a status and a body (lines, for a watch)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.data = status, body

    def stream(self, amt: None, decode_content: bool) -> Iterator[bytes]:
        yield from (self.data[i : i + 7] for i in range(0, len(self.data), 7))  # split lines

    def close(self) -> None: ...

    def release_conn(self) -> None: ...


def test_a_watch_told_its_version_is_gone_lists_again_and_drops_what_went_meanwhile() -> None:
    def listing(*names: str) -> Scripted:
        items = [{"metadata": {"name": n, "namespace": "ns"}, "spec": {"containers": []}}
                 for n in names]  # fmt: skip
        body = {"items": items, "metadata": {"resourceVersion": "5"}}
        return Scripted(200, json.dumps(body).encode())

    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    answers = [listing("a", "b"), Scripted(200, json.dumps(gone).encode() + b"\n"),
               listing("b", "c")]  # fmt: skip
    informer = Informer(
        "pods", lambda **kw: answers.pop(0), slim_pod, lambda o: o["metadata"]["name"]
    )
    seen = Seen()
    informer.changed = seen
    version = informer._list()
    with pytest.raises(Expired):
        informer._watch(version)
    informer._list()
    assert sorted(p["metadata"]["name"] for p in informer.values()) == ["b", "c"]
    assert seen.names() == [(None, None), (None, None)]
