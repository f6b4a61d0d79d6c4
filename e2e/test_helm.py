"""`helm install berth` on the real local control plane, with the real Helm and kubectl.

Images cannot be pulled here, so the operator and the recommender run as local processes; the
operator acts with the token of the chart's own ServiceAccount, so the RBAC it gets is the
chart's, not admin's. kwok plays the chart's pods (they never run) and the jobs' workers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from berth.core.manifest import load_documents
from tests.conftest import own_control_plane
from tests.kube import BerthProcess, Cluster, eventually, operator, recommender

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "berth"
RBAC = ROOT / "operator" / "rbac.yaml"
RELEASE, NAMESPACE = "berth", "berth-system"
pytestmark = [pytest.mark.helm, pytest.mark.controlplane, pytest.mark.slow]

CKPT = """
apiVersion: v1
kind: PersistentVolume
metadata: {name: resnet50-ckpt}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteMany]
  hostPath: {path: /tmp/ckpt}
  storageClassName: ""
  claimRef: {namespace: ml-research, name: resnet50-ckpt}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: resnet50-ckpt, namespace: ml-research}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: resnet50-ckpt
  resources: {requests: {storage: 10Gi}}
"""


def tools() -> Path:
    done = subprocess.run(
        [str(ROOT / "scripts/helm-tools.sh")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


@dataclass
class Env:
    cluster: Cluster
    bin: Path
    tmp: Path

    def run(
        self,
        tool: str,
        *args: str,
        kubeconfig: Path | None = None,
        check: bool = True,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        config = kubeconfig or self.cluster.kubeconfig
        done = subprocess.run(
            [str(self.bin / tool), "--kubeconfig", str(config), *args],
            capture_output=True,
            text=True,
            timeout=300,
            input=stdin,
        )
        if check:
            assert done.returncode == 0, f"{tool} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def kubectl(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)  # type: ignore[arg-type]

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args)

    def release_objects(self) -> list[str]:
        """Every object the release labelled, of the kinds the chart renders."""
        kinds = ("deployments,daemonsets,services,serviceaccounts,configmaps,cronjobs,"
                 "persistentvolumeclaims,horizontalpodautoscalers,networkpolicies,"
                 "clusterroles,clusterrolebindings")  # fmt: skip
        got = self.kubectl("get", kinds, "-A", "-l", f"app.kubernetes.io/instance={RELEASE}",
                           "-o", "name")  # fmt: skip
        return got.stdout.split()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("helm")
    bin_dir = tools()
    for cluster in own_control_plane(tmp / "plane"):
        small = load_documents(files("berth").joinpath("clusters/small.yaml").read_text())[0]
        for pool in small["pools"]:
            pool["nodes"] = 4 if pool["name"] == "a100" else pool["nodes"]  # room for all
        cluster.add_nodes(small)
        yield Env(cluster, bin_dir, tmp)


@pytest.fixture(scope="module")
def installed(env: Env) -> Iterator[BerthProcess]:
    """The chart installed; the operator running as the chart's ServiceAccount."""
    env.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace")
    token = env.kubectl("create", "token", f"{RELEASE}-operator", "-n", NAMESPACE,
                        "--duration", "24h").stdout.strip()  # fmt: skip
    identity = env.cluster.plane.kubeconfig_with_token(env.tmp / "operator.kubeconfig", token)
    rec, url = recommender(env.tmp / "recommender.log")
    op = operator(identity, env.tmp / "operator.log", url).start()
    try:
        yield op
    finally:
        op.stop()
        rec.stop()


def test_the_chart_lints_clean(env: Env) -> None:
    done = env.helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in done.stdout


def test_every_rendered_object_is_valid_for_the_pinned_api_server(env: Env) -> None:
    """Server-side dry run: the real API server of the pinned version checks every object
    against its own schemas, strictly (unknown fields are errors), every option turned on."""
    options = [
        "operator.replicas=2", "operator.prometheusUrl=http://prom:9090", "retrain.enabled=true",
        "retrain.prometheusUrl=http://prom:9090",
        "recommender.autoscaling.enabled=true", "recommender.networkPolicy.enabled=true",
        "energy.idleWatts.NVIDIA-A100-SXM4-80GB=420", "recommender.driftPrometheusUrl=http://p:9090",
    ]  # fmt: skip
    rendered = env.helm("template", "dry", str(CHART), "-n", "dry-run",
                        *(f"--set={o}" for o in options)).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    assert {d["kind"] for d in rest} >= {"Deployment", "DaemonSet", "CronJob"}
    args = [
        d["spec"]["template"]["spec"]["containers"][0]["args"]
        for d in rest
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    ]
    assert "--leader-elect=dry-run" in args[0]
    env.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                stdin=yaml.safe_dump_all(crds))  # fmt: skip
    # The CRDs must exist for the dry run of objects of their kinds: create, check, remove.
    env.kubectl("create", "namespace", "dry-run")
    env.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    env.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    try:
        env.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                    stdin=yaml.safe_dump_all(rest))  # fmt: skip
    finally:
        for crd in crds:
            env.kubectl("delete", "crd", crd["metadata"]["name"], "--wait=true")
        env.kubectl("delete", "namespace", "dry-run", "--wait=false")


def test_a_typo_in_the_values_fails_the_install(env: Env) -> None:
    done = env.run("helm", "install", "typo", str(CHART), "--set", "operator.replica=2",
                   "--dry-run=client", check=False)  # fmt: skip
    assert done.returncode != 0
    assert "additional properties 'replica' not allowed" in done.stderr


def test_examples_applied_with_kubectl_are_placed_on_the_right_types(
    env: Env, installed: BerthProcess
) -> None:
    for ns in ("serving", "hpc", "ml-research"):
        env.kubectl("create", "namespace", ns)
    env.kubectl("apply", "-f", "-", stdin=CKPT)
    env.kubectl("apply", "-f", str(ROOT / "examples"))

    def placed() -> dict[str, dict[str, object]] | None:
        got = json.loads(env.kubectl("get", "aj", "-A", "-o", "json").stdout)["items"]
        running = {
            j["metadata"]["name"]: j for j in got if j.get("status", {}).get("phase") == "Running"
        }
        return running if len(running) == len(got) == 5 else None

    jobs = eventually(placed, timeout=90, what="all five examples Running")
    for name, job in jobs.items():
        spec, placement = job["spec"], job["status"]["placement"]  # type: ignore[index]
        allowed = spec["accelerators"]["types"]  # type: ignore[index]
        assert placement["type"] in allowed if allowed else placement["type"] != "cpu", name
    table = env.kubectl("get", "aj", "-A").stdout
    header = table.splitlines()[0].split()
    assert header[:4] == ["NAMESPACE", "NAME", "PHASE", "TYPE"], table
    assert "Running" in table and "gpt2-finetune" in table
    events = env.kubectl("get", "events", "-n", "serving", "--field-selector",
                         "involvedObject.kind=AcceleratorJob", "-o", "json").stdout  # fmt: skip
    assert "Placed" in {e["reason"] for e in json.loads(events)["items"]}


def test_the_operators_rbac_is_exactly_the_charts(env: Env, installed: BerthProcess) -> None:
    identity = env.tmp / "operator.kubeconfig"
    can = env.kubectl("auth", "can-i", "delete", "nodes", kubeconfig=identity, check=False)
    assert can.stdout.strip() == "no"
    denied = env.kubectl(
        "delete", "node", "--all", "--dry-run=server", kubeconfig=identity, check=False
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    secrets = env.kubectl("get", "secrets", "-A", kubeconfig=identity, check=False)
    assert "forbidden" in secrets.stderr.lower()
    allowed = env.kubectl("auth", "can-i", "patch", "acceleratorjobs.berth.dev",
                          "--subresource=status", kubeconfig=identity, check=False)  # fmt: skip
    assert allowed.stdout.strip() == "yes"
    # The ClusterRole in the cluster holds exactly operator/rbac.yaml's rules.
    role = json.loads(env.kubectl("get", "clusterrole", f"{RELEASE}-operator", "-o", "json").stdout)
    (source,) = [d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole"]
    assert role["rules"] == source["rules"]


def test_upgrade_then_uninstall_leaves_nothing_but_the_kept_crd(
    env: Env, installed: BerthProcess
) -> None:
    env.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
             "--set", "operator.resizePeriod=120")  # fmt: skip
    deployment = json.loads(env.kubectl("get", "deployment", f"{RELEASE}-operator", "-n",
                                        NAMESPACE, "-o", "json").stdout)  # fmt: skip
    assert "--resize-period=120" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        json.loads(env.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)["version"]
        == 2
    )
    assert env.release_objects()
    env.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait")
    assert env.release_objects() == []
    crd = json.loads(env.kubectl("get", "crd", "acceleratorjobs.berth.dev", "-o", "json").stdout)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # the users' jobs survive the uninstall with it
    assert len(json.loads(env.kubectl("get", "aj", "-A", "-o", "json").stdout)["items"]) == 5
