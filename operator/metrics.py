"""The operator's Prometheus metrics (berth_ prefix, base units)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "berth_operator_decisions",
            "Placement decisions by outcome (placed, pending, invalid).",
            ["outcome"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "berth_operator_decision_seconds",
            "From taking a job off the queue to its status written.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.fallbacks = Counter(
            "berth_operator_fallbacks",
            "Decisions made without the recommender's answer, by the predictor used instead.",
            ["predictor"],
            registry=r,
        )
        self.resizes = Counter(
            "berth_operator_resizes", "Resizes applied to running jobs.", registry=r
        )
        self.predicted_energy = Counter(
            "berth_operator_predicted_energy_joules",
            "Predicted energy of the jobs placed (jobs with a known amount of work).",
            ["type"],
            registry=r,
        )
        self.queue = Gauge(
            "berth_operator_pending_jobs", "Jobs waiting for a placement.", registry=r
        )
        self.measured_ratio = Histogram(
            "berth_operator_measured_to_predicted_ratio",
            "Running jobs' measured throughput over the recommender's prediction, at the "
            "allocation they hold, each period they are measured.",
            buckets=(0.25, 0.5, 0.67, 0.8, 0.9, 1.1, 1.25, 1.5, 2, 4),
            registry=r,
        )
        self.measured_at = Gauge(
            "berth_operator_last_measurement_timestamp_seconds",
            "When a running job's progress was last read (from Prometheus or its workers).",
            registry=r,
        )
        self.measurement_failures = Counter(
            "berth_operator_measurement_failures",
            "Progress queries to Prometheus that failed (the job's work left is modelled).",
            registry=r,
        )
        self.scrape_failures = Counter(
            "berth_operator_scrape_failures",
            "Workers' progress counters that did not answer when the operator scraped them "
            "itself (no Prometheus): their job's round is incomplete.",
            registry=r,
        )
        self.api_conflicts = Counter(
            "berth_operator_api_conflicts",
            "Writes refused with 409 Conflict and retried with fresh state.",
            registry=r,
        )
