"""`berth operator`: kopf with berth's settings, the reconciler and the metrics server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from berth.core.manifest import ManifestError, read_one
from berth.operator.leader import Timing
from berth.placement.elastic import Settings

RBAC_NOTE = "the minimal ClusterRole is operator/rbac.yaml"


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "operator",
        help="run the operator: place AcceleratorJobs and run their workers",
        description="Watch AcceleratorJobs, Nodes and Pods; place each job for the least energy "
        "per unit of work that meets its objective and deadline; create its workers. "
        f"Needs the CRD installed and RBAC ({RBAC_NOTE}).",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    p.add_argument(
        "--recommender-url",
        default=os.environ.get("BERTH_RECOMMENDER_URL"),
        help="the recommender's base URL (default $BERTH_RECOMMENDER_URL; without one, the "
        "fallback predictors are used and named in every job's status)",
    )
    p.add_argument("--recommender-timeout", type=float, default=2.0, metavar="SECONDS")
    p.add_argument("--metrics-port", type=int, default=8080, help="0 turns /metrics off")
    p.add_argument("--health-port", type=int, default=8081, help="kopf's /healthz; 0: off")
    p.add_argument(
        "--leader-elect",
        metavar="NAMESPACE",
        help="for more than one replica: only the holder of the Lease berth-operator in this "
        "namespace decides; the others keep their caches warm and take over within "
        f"{Timing.duration_s + Timing.retry_s:g} s of its last renewal. Without it the "
        "operator acts alone",
    )
    p.add_argument(
        "--prometheus-url",
        default=os.environ.get("BERTH_PROMETHEUS_URL"),
        help="where the workers' progress counters (berth_job_samples_total) are scraped: "
        "running jobs' work left and rates are measured there, and resizes decided on them "
        "(default $BERTH_PROMETHEUS_URL; without one, the operator scrapes the workers that "
        "set BERTH_METRICS_PORT itself)",
    )
    p.add_argument(
        "--measure-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="the window of one measured rate: at least two scrape intervals (default 60)",
    )
    p.add_argument(
        "--resize-period",
        type=float,
        default=Settings.period_s,
        metavar="SECONDS",
        help="how often elastic jobs are considered for resizing (0: never; default "
        f"{Settings.period_s:g})",
    )
    p.add_argument(
        "--explore",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a running elastic job may run for a while at a count of its type it was never "
        "measured at, where its objective could be better there (a bounded, stated cost; each "
        "trial is a Resized Event and a status.resizes entry with trial: true; default: on)",
    )
    p.add_argument(
        "--resize-min-interval",
        type=float,
        default=Settings.min_interval_s,
        metavar="SECONDS",
        help=f"the least time between two resizes of one job (default {Settings.min_interval_s:g})",
    )
    p.add_argument(
        "--energy-facts",
        metavar="FILE",
        help="YAML {idleWatts: {<nvidia.com/gpu.product or berth.dev/cpu-class>: W}}: idle "
        "power of nodes no exporter measures (the chart's energy ConfigMap)",
    )
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=run)


def read_energy_facts(path: str) -> dict[str, float]:
    """Idle watts by node label value; a bad file is refused with what is wrong."""
    try:
        doc = read_one(Path(path)) or {}
    except ManifestError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(doc, dict) or set(doc) - {"idleWatts"}:
        raise ValueError(f"{path}: expected a mapping with only the key idleWatts")
    facts = doc.get("idleWatts") or {}
    if not isinstance(facts, dict):
        raise ValueError(f"{path}: idleWatts must map label values to watts")
    out = {}
    for key, watts in facts.items():
        if isinstance(watts, bool) or not isinstance(watts, int | float) or not watts >= 0:
            raise ValueError(
                f"{path}: idleWatts[{key!r}] = {watts!r} is not a number of watts >= 0"
            )
        out[str(key)] = float(watts)
    return out


def run(args: argparse.Namespace) -> int:
    if args.resize_period < 0 or args.resize_min_interval < 0:
        print("error: --resize-period and --resize-min-interval must be >= 0", file=sys.stderr)
        return 2
    if not args.measure_window >= 1:
        print("error: --measure-window must be at least 1 s", file=sys.stderr)
        return 2
    idle_watts = {}
    if args.energy_facts:
        try:
            idle_watts = read_energy_facts(args.energy_facts)
        except (OSError, ValueError) as exc:
            print(f"error: --energy-facts: {exc}", file=sys.stderr)
            return 2
    if args.kubeconfig:
        # Before the client library is imported: it reads KUBECONFIG once, and kopf logs in
        # through it.
        os.environ["KUBECONFIG"] = args.kubeconfig
    try:
        import kopf
        from kubernetes import client, config
        from prometheus_client import start_http_server
    except ImportError as exc:
        print(f"error: {exc.name} is missing: pip install 'berth[operator]'", file=sys.stderr)
        return 2

    from berth.operator import handlers
    from berth.operator.events import INSTANCE
    from berth.operator.informer import Informer
    from berth.operator.kube import KubeApi
    from berth.operator.leader import Elector, KubeLeases
    from berth.operator.measurements import Measurements, PrometheusProgress
    from berth.operator.metrics import Metrics
    from berth.operator.reconciler import Reconciler
    from berth.operator.scraping import WorkerScraper
    from berth.operator.state import slim_node, slim_pod
    from berth.recommender.client import RecommenderClient

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # kopf logs every handler call at INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    api = _api_client(client, config, args.kubeconfig)
    metrics = Metrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=metrics.registry)
    ask = None
    if args.recommender_url:
        ask = RecommenderClient(args.recommender_url, args.recommender_timeout).recommend
    elastic = None
    if args.resize_period > 0:
        elastic = Settings(
            period_s=args.resize_period,
            min_interval_s=args.resize_min_interval,
            explore=args.explore,
        )
    core = client.CoreV1Api(api)
    nodes = Informer("nodes", core.list_node, slim_node, lambda o: o["metadata"]["name"])
    pods = Informer(
        "pods",
        core.list_pod_for_all_namespaces,
        slim_pod,
        lambda o: (o["metadata"].get("namespace"), o["metadata"]["name"]),
    )
    measurements: Measurements | None = None
    scraper = None
    if args.prometheus_url:
        measurements = PrometheusProgress.connect(args.prometheus_url, args.measure_window)
    elif elastic is not None:
        measurements = scraper = WorkerScraper(
            pods.values, args.measure_window, failed=metrics.scrape_failures.inc
        )
    reconciler = Reconciler(
        KubeApi(api),
        ask,
        metrics,
        elastic=elastic,
        idle_watts=idle_watts,
        measurements=measurements,
    )
    elector = None
    if args.leader_elect:
        elector = Elector(KubeLeases(api, args.leader_elect), INSTANCE)

    @kopf.on.startup()
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 30
        memo.runner = handlers.Runner(reconciler, elector)
        memo.runner.watch(nodes, pods)
        if scraper is not None:
            scraper.start()

    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=True,  # every replica watches; the Lease says which one decides
            liveness_endpoint=liveness,
        )
    )
    return 0


def _api_client(client: Any, config: Any, kubeconfig: str | None) -> Any:
    if kubeconfig is None:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    return config.new_client_from_config(config_file=kubeconfig)
