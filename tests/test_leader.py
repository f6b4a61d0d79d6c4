"""Leader election on a Lease: at most one replica leads at any moment of any replica's clock."""

from __future__ import annotations

import subprocess
import sys

from berth.operator.leader import Elector, Record, Timing

TIMING = Timing(duration_s=15.0, renew_deadline_s=10.0, retry_s=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Leases:
    """The API server's side: a write is conditional on the version it read."""

    def __init__(self) -> None:
        self.record: Record | None = None
        self.writes = 0

    def read(self) -> Record | None:
        return self.record

    def write(self, holder: str, previous: Record | None, timing: Timing) -> bool:
        if previous != self.record:
            return False
        self.writes += 1
        self.record = Record(holder, f"renewal {self.writes}", None, str(self.writes))
        return True


def elector(leases: Leases, me: str, clock: Clock) -> Elector:
    return Elector(leases, me, TIMING, clock)


def test_a_free_lease_is_taken_and_its_taker_leads() -> None:
    leases, clock = Leases(), Clock()
    a = elector(leases, "a", clock)
    assert a.step() is True
    assert a.leading()
    assert leases.record is not None and leases.record.holder == "a"


def test_a_standby_does_not_lead_while_the_holder_renews() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    a.step()
    for _ in range(30):
        clock.now += TIMING.retry_s
        a.step()
        b.step()
        assert a.leading() and not b.leading()


def test_a_standby_takes_over_a_whole_duration_after_the_last_renewal_it_saw() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    a.step()
    b.step()  # sees a's renewal at t=0
    while clock.now < TIMING.duration_s - TIMING.retry_s:
        clock.now += TIMING.retry_s
        assert b.step() is False
    clock.now = TIMING.duration_s
    assert b.step() is True
    assert b.leading()


def test_a_holder_that_cannot_renew_stops_leading_before_a_standby_may_take_over() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    a.step()
    b.step()
    while clock.now < 30:
        clock.now += 0.5
        b.step()  # a is partitioned: it never renews again
        assert not (a.leading() and b.leading()), f"two leaders at t={clock.now}"
    assert b.leading()


def test_of_two_replicas_racing_for_a_free_lease_one_wins() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    seen_by_b = leases.read()
    a.step()
    assert leases.write("b", seen_by_b, TIMING) is False  # b wrote on what it read before a
    b.step()
    assert a.leading() and not b.leading()


def test_a_holder_that_finds_another_in_the_lease_stops_leading() -> None:
    leases, clock = Leases(), Clock()
    a = elector(leases, "a", clock)
    a.step()
    leases.record = Record("b", "taken over", None, "99")
    a.step()
    assert not a.leading()


def test_the_operator_command_loads_no_kubernetes_client_before_it_sets_kubeconfig() -> None:
    """The client reads KUBECONFIG once, at import: `berth operator --kubeconfig` sets it
    first, so nothing imported with the command may load the client."""
    code = "import sys, berth.cli, berth.operator.commands; print('kubernetes' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
