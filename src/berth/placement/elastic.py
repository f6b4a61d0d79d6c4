"""rebalance(...) -> resizes and moves of running jobs, pure; one period of berth's elasticity.

The steps, in this order, each within the job's count range (all but 4 on its own type):

0. back from a trial (step 5) once it is measured, when the count before suits the job better;
1. shrink to admit: a waiting job that fits nowhere frees devices of a type it allows by
   shrinking elastic jobs of that type towards their min, lowest marginal loss first (the
   fraction of throughput a job loses per device it gives up), never below what a job needs to
   meet a deadline it would meet, and only when the shrinks free enough for the waiting job's
   min;
2. grow to meet a deadline: a job that will miss its deadline at its count grows to the
   least count predicted to meet it, from free devices and, when those are too few, from
   shrinking others as in 1; a job no count meets grows, from free devices, to the least
   energy within a bounded slowdown of its fastest count (lateness.py);
3. grow while devices would idle: under an energy objective only while joules per sample stay
   within `energy_bound` of the current; under time or balanced while the gain in throughput
   beats the restart it costs;
4. move to another type when the job's objective, counted over the work it has left with the
   restart included, gains at least `min_gain`, never past a deadline it meets; a job late
   wherever it goes, to the least energy within a bounded slowdown when that saves time.
   Elastic jobs and rigid jobs that declared the checkpoint contract (`resumable`) move; a
   rigid job keeps its count. A move only takes devices of a type that stays at least
   `move_headroom` idle after it: it holds them for all its remaining work, and in the ITP
   simulation moves into a busier type cost later arrivals more deadlines than they saved;
5. measure where it pays (explore.py; off without `explore`): a job whose objective could be better
   at a count of its type it never ran, where its prediction is uncertain, runs there for a
   while at a bounded cost (step 0 brings it back if it did not pay).

Workers are added or removed (torchrun's elastic agents come and go as nodes), and a shrink
that a whole worker would overshoot gives the last worker fewer devices (it is made again
with them: a worker whose device count changes is replaced); a resized job pays `restart_s`
of lost progress (checkpoint and restart), a job is not resized again within
`min_interval_s`, and at most `max_resizes` resizes happen per period. Hysteresis: a move must
gain at least `min_gain` of the job's throughput (or meet a deadline) to be made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from berth.core.allocation import Share, Shares
from berth.core.job import AcceleratorJob, ObjectiveKind
from berth.core.prediction import Key, Prediction
from berth.core.snapshot import ClusterSnapshot
from berth.placement.explore import Step, explorable, settle, trial
from berth.placement.free import FreeDevices
from berth.placement.lateness import least_energy_in_time
from berth.placement.score import objective_scores


@dataclass(frozen=True)
class Settings:
    period_s: float = 300.0
    min_interval_s: float = 900.0
    max_resizes: int = 8
    energy_bound: float = 1.10  # growing may raise J/sample by at most 10 %
    min_gain: float = 0.05
    restart_s: float = 60.0  # checkpoint + restart, charged to every resize
    move_headroom: float = 0.75  # share of a type's devices still free after a move onto it
    explore: bool = True  # step 5
    explore_budget: float = 0.02  # of a job's time left, what one trial may cost


@dataclass(frozen=True)
class RunningJob:
    id: str
    job: AcceleratorJob
    type: str
    shares: Shares
    remaining_samples: float | None
    deadline_in_s: float | None  # seconds left to the deadline; None without one
    last_resize_s: float  # when it was last resized (-inf: never; placement is not a resize)
    predictions: Mapping[int, Prediction]  # count -> prediction on this type
    restart_s: float | None = None  # this job's resize cost; None: the settings' default
    elsewhere: Mapping[Key, Prediction] = field(default_factory=dict)  # other types
    resumable: bool = False  # rigid, but restarts from its checkpoint: may move, same count
    measured: frozenset[int] = frozenset()  # counts on its type its rate was measured at
    trial_from: int | None = None  # the count before, while its allocation is a trial (step 5)

    @cached_property
    def count(self) -> int:
        return sum(d for _, d in self.shares)

    @cached_property
    def counts(self) -> tuple[int, ...]:
        """The counts predicted on its type, ascending: no other count can be chosen."""
        return tuple(sorted(self.predictions))

    def counts_in(self, low: int, high: int) -> list[int]:
        """The predicted counts c with low <= c <= high, ascending."""
        return [c for c in self.counts if low <= c <= high]

    @cached_property
    def rates(self) -> dict[int, float]:
        """count -> predicted samples/s on its type (asked millions of times a simulation)."""
        return {c: p.throughput.value for c, p in self.predictions.items()}

    @cached_property
    def joules(self) -> dict[int, float]:
        """count -> predicted J/sample on its type."""
        return {
            c: c * p.device_watts.value / p.throughput.value for c, p in self.predictions.items()
        }


@dataclass(frozen=True)
class WaitingJob:
    id: str
    job: AcceleratorJob
    types: tuple[str, ...]  # types it may take here (allowed and predicted)


@dataclass(frozen=True)
class Resize:
    id: str
    type: str
    shares: Shares  # the whole new allocation
    from_count: int
    to_count: int
    reason: str
    predicted_gain: str
    trial: bool = False  # step 5's measurement: settled once measured


def by_type(
    found: Mapping[Key, Prediction], type_id: str
) -> tuple[dict[int, Prediction], dict[Key, Prediction]]:
    """(type, count) -> prediction, split into what RunningJob.predictions (this type, by
    count) and RunningJob.elsewhere (every other type) hold."""
    here = {c: p for (t, c), p in found.items() if t == type_id}
    return here, {k: p for k, p in found.items() if k[0] != type_id}


def _rate(r: RunningJob, count: int) -> float | None:
    return r.rates.get(count)


def _joules(r: RunningJob, count: int) -> float | None:
    return r.joules.get(count)


def _restart(r: RunningJob, settings: Settings) -> float:
    return settings.restart_s if r.restart_s is None else r.restart_s


def _meets(r: RunningJob, count: int, restart_s: float) -> bool | None:
    rate = _rate(r, count)
    if r.deadline_in_s is None or r.remaining_samples is None or rate is None:
        return None
    extra = restart_s if count != r.count else 0.0
    return r.remaining_samples / rate + extra <= r.deadline_in_s


def _floor(r: RunningJob, settings: Settings) -> int:
    """The least count a shrink may leave: the job's min, or the least that still meets a
    deadline it would meet now (admitting one job never costs another its deadline)."""
    low = r.job.accelerators.count.min
    if _meets(r, r.count, 0.0):
        meets = (c for c in r.counts_in(low, r.count - 1) if _meets(r, c, _restart(r, settings)))
        low = next(meets, r.count)
    return low


def _grown(r: RunningJob, extra: Shares) -> Shares:
    return r.shares + extra  # new workers join; running ones keep their devices


def _shrunk(r: RunningJob, to: int) -> tuple[Shares, Shares] | None:
    """Down to `to` devices: whole workers dropped, last first, then the last one kept given
    fewer devices if it still holds more than `to` needs; (kept, released).

    Whole workers alone stall admission: a job of two 8-device workers could only shrink to 8,
    often below a deadline it meets, so a short job waited hours behind it. With this rule (and
    shrinks of no more than a waiting job needs) berth met 1,944 deadlines against 1,810 over
    the first 1,000 jobs of four ITP clusters, and 120 against 124 on the 195-job sample."""
    kept = list(r.shares)
    released: list[tuple[str, int]] = []
    while kept and sum(d for _, d in kept) - kept[-1][1] >= to:
        released.append(kept.pop())
    over = sum(d for _, d in kept) - to
    if over > 0 and kept:
        node, devices = kept[-1]
        kept[-1] = Share(node, devices - over)
        released.append(Share(node, over))
    return (tuple(kept), tuple(released)) if released else None


def _urgency(r: RunningJob) -> tuple[float, str]:
    return (r.deadline_in_s if r.deadline_in_s is not None else math.inf), r.id


@dataclass
class Round:
    """One period's state, outside the steps that change it: the devices still free, the
    resizes so far, and the jobs already resized this period."""

    free: FreeDevices
    running: Sequence[RunningJob]
    now_s: float
    settings: Settings
    resizes: list[Resize] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)

    @staticmethod
    def start(
        snapshot: ClusterSnapshot, running: Sequence[RunningJob], now_s: float, settings: Settings
    ) -> Round:
        return Round(FreeDevices(snapshot), running, now_s, settings)

    def movable(self, r: RunningJob, moving: bool = False) -> bool:
        """May `r` be resized now: elastic (or resumable, to move), not yet this period, not
        within its minimum interval, and the period's cap not reached."""
        return (
            (r.job.elastic or (moving and r.resumable))
            and r.id not in self.touched
            and self.now_s - r.last_resize_s >= self.settings.min_interval_s
            and len(self.resizes) < self.settings.max_resizes
        )

    def donors(
        self, type_id: str, names: Sequence[str], need: int, priority: int, skip: str
    ) -> bool:
        """Shrink elastic jobs of `type_id` (never of higher priority) until `need` devices are
        free on `names`, lowest marginal loss first; False, and nobody disturbed, if they
        cannot."""
        offers: list[tuple[float, RunningJob, Shares, Shares]] = []
        for r in self.running:
            if (
                r.type != type_id
                or r.id == skip
                or not self.movable(r)
                or r.job.priority > priority
            ):
                continue
            cut = _shrunk(r, _floor(r, self.settings))
            rate, low = _rate(r, r.count), None
            if cut is not None:
                low = _rate(r, sum(d for _, d in cut[0]))
            if cut is None or rate is None or low is None:
                continue
            freed = sum(d for n, d in cut[1] if n in names)
            if freed:
                offers.append(((rate - low) / rate / freed, r, cut[0], cut[1]))
        chosen: list[tuple[RunningJob, Shares, Shares]] = []
        gained = self.free.total(names)
        for _, r, kept, released in sorted(offers, key=lambda p: (p[0], p[1].id)):
            if gained >= need or len(self.resizes) + len(chosen) + 1 >= self.settings.max_resizes:
                break
            # No more than the waiting job needs: the fewest devices that free enough.
            for to in reversed(r.counts_in(_floor(r, self.settings), r.count - 1)):
                cut = _shrunk(r, to)
                if cut is not None and sum(d for n, d in cut[1] if n in names) >= need - gained:
                    kept, released = cut
                    break
            chosen.append((r, kept, released))
            gained += sum(d for n, d in released if n in names)
        if gained < need:
            return False
        for r, kept, released in chosen:
            self.free.give(released)
            self.touched.add(r.id)
            to = sum(d for _, d in kept)
            lost = 1 - (_rate(r, to) or 0.0) / (_rate(r, r.count) or 1.0)
            self.resizes.append(
                Resize(r.id, r.type, kept, r.count, to, f"make room for {skip}",
                       f"-{lost:.0%} throughput for {skip}")
            )  # fmt: skip
        return True

    def admit(self, waiting: Sequence[WaitingJob]) -> None:
        """1. Shrink elastic jobs to admit waiting ones, highest priority first; the devices
        freed are held for them, so no later step takes them."""
        # 1. shrink to admit waiting jobs
        for w in sorted(waiting, key=lambda w: -w.job.priority):
            need = w.job.accelerators.count.min
            for type_id in w.types:
                names = self.free.eligible(w.job, type_id)
                if self.free.total(names) >= need or self.donors(
                    type_id, names, need, w.job.priority, w.id
                ):
                    self.free.take(names, need)  # held for it: no later step may take them
                    break

    def grow(self) -> None:
        """2. Grow jobs to meet their deadlines, most urgent first, shrinking others if need
        be; 3. grow jobs into idle devices within the energy bound."""
        for r in sorted(self.running, key=_urgency):
            if not self.movable(r):
                continue
            rate = _rate(r, r.count)
            late = _meets(r, r.count, 0.0) is False
            if rate is None or r.count >= r.job.accelerators.count.max:
                continue
            if not late and self.free.total(self.free.of_type.get(r.type, ())) == 0:
                continue  # nothing idles on its type: no growth to weigh
            names = self.free.eligible(r.job, r.type)
            target, reason = None, ""
            if late:
                for c in r.counts_in(r.count + 1, r.job.accelerators.count.max):
                    if _meets(r, c, _restart(r, self.settings)):
                        target, reason = c, "meet the deadline"
                        break
                extra = 0 if target is None else target - r.count
                if extra > self.free.total(names) and not self.donors(
                    r.type, names, extra, r.job.priority, r.id
                ):
                    target = None
            top = min(r.job.accelerators.count.max, r.count + self.free.total(names))
            if target is None and late:
                target, reason = _late_growth(r, rate, top, self.settings)
            if target is None:
                target, reason = _idle_growth(r, rate, top, self.settings)
            if (
                target is None
                or target <= r.count
                or len(self.resizes) >= self.settings.max_resizes
            ):
                continue
            new_rate = _rate(r, target) or rate
            self._step(r, Step(target, reason, f"+{new_rate / rate - 1:.0%} throughput"))

    def move(self) -> None:
        """4. Move jobs to another type their objective suits better, onto free devices only."""
        for r in sorted(self.running, key=_urgency):
            if not r.elsewhere or not self.movable(r, moving=True):
                continue
            count = r.job.accelerators.count
            usable: dict[str, list[str]] = {}  # type -> nodes the job may use there
            fits: dict[tuple[str, int], Prediction] = {}
            most = self.free.most_taken(self.settings.move_headroom)  # per type
            for (type_id, c), p in r.elsewhere.items():
                if type_id == r.type or not count.min <= c <= count.max:
                    continue
                if not r.job.elastic and c != r.count:
                    continue
                if c > most.get(type_id, -1):  # would leave too little of the type idle
                    continue
                if type_id not in usable:
                    usable[type_id] = self.free.eligible(r.job, type_id)
                if self.free.total(usable[type_id]) >= c:
                    fits[(type_id, c)] = p
            chosen = _better_type(r, fits, self.settings)
            if chosen is None:
                continue
            (type_id, c), gain = chosen
            shares = self.free.take(usable[type_id], c)
            if shares is None:
                continue
            self.free.give(r.shares)
            self.touched.add(r.id)
            reason = f"better for {r.job.objective.kind.value} on {type_id}"
            self.resizes.append(Resize(r.id, type_id, shares, r.count, c, reason, gain))

    def settle(self) -> None:
        """0. A trial measured: back to the count before when that suits the job better. First,
        so that no other step judges the job by the trial's figures."""
        for r in sorted(self.running, key=_urgency):
            if r.trial_from is not None and self.movable(r):
                self._step(r, settle(r, _restart(r, self.settings), self.settings.min_gain))

    def explore(self) -> None:
        """5. Trials where they pay."""
        s = self.settings
        if not s.explore:
            return
        lasts = max(s.period_s, s.min_interval_s)
        for r in sorted(self.running, key=_urgency):
            if r.job.elastic and explorable(r) and self.movable(r):
                low = r.job.accelerators.count.min
                step = trial(r, low, self._top(r), _restart(r, s), lasts, s.explore_budget,
                             s.min_gain)  # fmt: skip
                self._step(r, step, trial=True)

    def _top(self, r: RunningJob) -> int:
        names = self.free.eligible(r.job, r.type)
        return min(r.job.accelerators.count.max, r.count + self.free.total(names))

    def _step(self, r: RunningJob, step: Step | None, trial: bool = False) -> None:
        """Resize `r` on its type to `step.count`: new workers on free devices (none if too few
        are free), or devices given up from the last workers."""
        if step is None:
            return
        if step.count > r.count:
            grown = self.free.take(self.free.eligible(r.job, r.type), step.count - r.count)
            if grown is None:
                return
            shares = _grown(r, grown)
        else:
            cut = _shrunk(r, step.count)
            if cut is None:
                return
            shares, released = cut
            self.free.give(released)
        self.touched.add(r.id)
        to = sum(d for _, d in shares)
        resize = Resize(r.id, r.type, shares, r.count, to, step.reason, step.gain, trial)
        self.resizes.append(resize)


def rebalance(
    snapshot: ClusterSnapshot,
    running: Sequence[RunningJob],
    waiting: Sequence[WaitingJob],
    now_s: float,
    settings: Settings = Settings(),
) -> list[Resize]:
    """One period's resizes: the steps over one Round."""
    round_ = Round.start(snapshot, running, now_s, settings)
    round_.settle()  # 0. back from a measured trial
    round_.admit(waiting)  # 1. shrink to admit waiting jobs
    round_.grow()  # 2. grow to meet deadlines; 3. grow into idle devices
    round_.move()  # 4. move to another type
    round_.explore()  # 5. measure where it pays
    return round_.resizes


def _better_type(
    r: RunningJob, fits: Mapping[tuple[str, int], Prediction], settings: Settings
) -> tuple[tuple[str, int], str] | None:
    """Where among `fits` (other types, devices free) the job's objective over the work it has
    left, the restart included, is best, and the predicted gain; None to stay. A job late here
    and wherever it could go takes the least energy within a bounded slowdown instead."""
    here = r.predictions.get(r.count)
    if here is None or r.remaining_samples is None:
        return None
    left, restart = r.remaining_samples, _restart(r, settings)

    def seconds(p: Prediction, moved: bool) -> float:
        return left / p.throughput.value + (restart if moved else 0.0)

    budget = math.inf if r.deadline_in_s is None else r.deadline_in_s
    keys = sorted(k for k, p in fits.items() if seconds(p, True) <= budget)
    hopeless = not keys and seconds(here, False) > budget
    if hopeless:
        keys = sorted(fits)
    if not keys:
        return None
    runs = [(here, r.count, False)] + [(fits[k], k[1], True) for k in keys]
    secs = [seconds(p, moved) for p, _, moved in runs]
    joules = [s * c * p.device_watts.value for s, (p, c, _) in zip(secs, runs, strict=True)]
    if hopeless:
        best = least_energy_in_time(range(len(runs)), lambda i: joules[i], lambda i: secs[i])
        if best == 0 or secs[best] > secs[0] * (1 - settings.min_gain):
            return None
    else:
        scores = objective_scores(joules, secs, r.job.objective)
        best = min(range(1, len(runs)), key=lambda i: (scores[i], keys[i - 1]))
        if scores[best] > scores[0] * (1 - settings.min_gain):
            return None
    gain = f"{joules[best] / joules[0] - 1:+.0%} energy, {secs[best] / secs[0] - 1:+.0%} time"
    return keys[best - 1], gain


def _late_growth(
    r: RunningJob, rate: float, top: int, settings: Settings
) -> tuple[int | None, str]:
    """A job no count of its type gets in time: the count up to `top` with the least energy
    within a bounded slowdown (lateness.py), when the time it saves beats hysteresis and the
    restart."""
    counts = [c for c in r.counts_in(r.count, top) if _rate(r, c) and _joules(r, c)]
    if r.remaining_samples is None or r.count not in counts:
        return None, ""
    left = r.remaining_samples
    best = least_energy_in_time(
        counts, lambda c: _joules(r, c) or math.inf, lambda c: left / (_rate(r, c) or rate)
    )
    new_rate = _rate(r, best) or rate
    if best == r.count or new_rate / rate - 1 < settings.min_gain:
        return None, ""
    if left / rate - left / new_rate <= _restart(r, settings):
        return None, ""
    return best, "late whatever it gets: least energy within a bounded slowdown"


def _idle_growth(
    r: RunningJob, rate: float, top: int, settings: Settings
) -> tuple[int | None, str]:
    """The count up to `top` with the highest predicted throughput whose gain beats hysteresis
    and the restart, within the energy bound for energy jobs (fewer devices on a tie)."""
    joules = _joules(r, r.count)
    best, best_rate = None, rate
    for c in r.counts_in(r.count + 1, top):
        new_rate, new_joules = _rate(r, c), _joules(r, c)
        if new_rate is None or new_joules is None or joules is None:
            continue
        if new_rate / rate - 1 < settings.min_gain:
            continue
        if r.remaining_samples is not None:
            saved = r.remaining_samples / rate - r.remaining_samples / new_rate
            if saved <= _restart(r, settings):
                continue
        if (
            r.job.objective.kind is ObjectiveKind.ENERGY
            and new_joules > joules * settings.energy_bound
        ):
            continue
        if new_rate > best_rate:
            best, best_rate = c, new_rate
    return best, "use idle devices"
