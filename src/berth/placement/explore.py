"""Step 5 of the elastic policy: measure where it pays, and come back when it did not. Pure.

A job's predictions at counts it never ran are the recommender's, conditioned on what was
measured where it did run; they stay uncertain (a count twice as large shares only part of
the error measured at the one held). When the job's objective could be better at such a
count, though its prediction alone does not say so, a short run there settles it:

    trial at c  when  score(c | rate x (1 + u_c)) <= (1 - min_gain) score(held)
                and   score(c | rate)             >  (1 - min_gain) score(held)
                and   cost_s <= explore_budget * seconds left at the held count
    cost_s = 2 restart_s + trial_s * max(0, 1 - rate_c / rate_held)

(u_c: the posterior's relative uncertainty at c; the cost: a restart there and one back,
and the progress lost over the trial, the least time between resizes, if c is slower). Only a
job measured at the one count it holds (one trial a type), never a count that would risk a
deadline the job meets. Once the trial count is measured, the job goes back to the count it
came from if that scores better by `min_gain` (the posterior now knows both); otherwise it
stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from berth.placement.score import objective_scores

if TYPE_CHECKING:
    from berth.placement.elastic import RunningJob


@dataclass(frozen=True)
class Step:
    count: int
    reason: str
    gain: str


def _scores(r: RunningJob, rates: dict[int, float], restart_s: float) -> dict[int, float]:
    """The job's objective over its work left at each count's `rates` (restart included)."""
    left = r.remaining_samples or 0.0
    counts = sorted(rates)
    secs = [left / rates[c] + (restart_s if c != r.count else 0.0) for c in counts]
    watts = [r.predictions[c].device_watts.value for c in counts]
    joules = [s * c * w for s, c, w in zip(secs, counts, watts, strict=True)]
    return dict(zip(counts, objective_scores(joules, secs, r.job.objective), strict=True))


def explorable(r: RunningJob) -> bool:
    """Measured where it runs first, and at that one count only: one trial a type."""
    return bool(r.remaining_samples) and r.count in r.predictions and r.measured == {r.count}


def trial(
    r: RunningJob,
    low: int,
    top: int,
    restart_s: float,
    trial_s: float,
    budget: float,
    min_gain: float,
) -> Step | None:
    """A count from `low` to `top` worth a measurement lasting `trial_s`, or None."""
    if not explorable(r):
        return None
    left = r.remaining_samples or 0.0
    rate = r.predictions[r.count].throughput.value
    seconds_left = left / rate
    weight = r.job.objective.energy_weight
    held_joules = r.joules[r.count]
    best: tuple[float, int, float] | None = None
    for c in r.counts_in(low, top):
        p = r.predictions[c]
        u = p.throughput.provenance.uncertainty
        if c == r.count or not u:
            continue
        # What even the hopeful rate cannot win (the restart only adds to c's score).
        if weight == 1.0 and r.joules[c] / (1 + u) > (1 - min_gain) * held_joules:
            continue
        if weight == 0.0 and p.throughput.value * (1 + u) * (1 - min_gain) < rate:
            continue
        cost_s = 2 * restart_s + trial_s * max(0.0, 1 - p.throughput.value / rate)
        if cost_s > budget * seconds_left:
            continue
        if r.deadline_in_s is not None and seconds_left <= r.deadline_in_s < seconds_left + cost_s:
            continue  # it meets its deadline here; a trial could cost it
        rates = {r.count: rate, c: p.throughput.value}
        mean = _scores(r, rates, restart_s)
        hopeful = _scores(r, rates | {c: p.throughput.value * (1 + u)}, restart_s)
        # A clear gain on the prediction alone is the other steps' to take.
        unclear = mean[c] > (1 - min_gain) * mean[r.count]
        hoped = hopeful[c] / hopeful[r.count]
        if unclear and hoped <= 1 - min_gain and (best is None or hoped < best[0]):
            best = (hoped, c, cost_s)
    if best is None:
        return None
    _, c, cost_s = best
    u = r.predictions[c].throughput.provenance.uncertainty or 0.0
    reason = (
        f"measure x{c}: its rate there is uncertain (+/-{u:.0%}) and could suit "
        f"{r.job.objective.kind.value} better; the trial costs about {cost_s:.0f} s, within "
        f"{budget:.0%} of the {seconds_left / 3600:.1f} h left"
    )
    return Step(c, reason, f"{r.predictions[c].throughput.value / rate - 1:+.0%} throughput")


def settle(r: RunningJob, restart_s: float, min_gain: float) -> Step | None:
    """Back to the count a trial came from, once the trial count is measured and the count
    before scores better; None to stay."""
    back = r.trial_from
    if back is None or r.count not in r.measured or back not in r.predictions:
        return None
    here = r.predictions.get(r.count)
    if here is None or not r.remaining_samples:
        return None
    rates = {c: r.predictions[c].throughput.value for c in (r.count, back)}
    scores = _scores(r, rates, restart_s)
    if scores[back] > (1 - min_gain) * scores[r.count]:
        return None
    if r.deadline_in_s is not None:
        meets_here = r.remaining_samples / rates[r.count] <= r.deadline_in_s
        meets_back = r.remaining_samples / rates[back] + restart_s <= r.deadline_in_s
        if meets_here and not meets_back:
            return None
    reason = f"measured x{r.count}: x{back} suits {r.job.objective.kind.value} better"
    return Step(back, reason, f"{rates[back] / rates[r.count] - 1:+.0%} throughput")
