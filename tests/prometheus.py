"""A real Prometheus server for tests: Debian's package, fetched and unpacked by
scripts/prometheus.sh on first use, run on loopback with a scrape config of the test's own."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from tests.kube import free_port

ROOT = Path(__file__).resolve().parents[1]


def binaries() -> Path:
    done = subprocess.run(
        [str(ROOT / "scripts/prometheus.sh")], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/prometheus.sh failed:\n{done.stderr}")
    return Path(done.stdout.strip())


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer in {timeout_s:g} s") from None
            time.sleep(0.1)


class Prometheus:
    """`targets`: (job name, host:port, extra target labels) scraped every second."""

    def __init__(
        self, bin_dir: Path, tmp: Path, targets: Sequence[tuple[str, str, Mapping[str, str]]]
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": name,
                    "static_configs": [{"targets": [target], "labels": dict(labels)}],
                }
                for name, target, labels in targets
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                str(bin_dir / "prometheus"),
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.url}/-/ready")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
