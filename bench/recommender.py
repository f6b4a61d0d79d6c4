"""Recommender speed: /v1/recommend over loopback, and onnxruntime against numpy.

    .venv/bin/python bench/recommender.py [--seconds S] [--clients N]

1. The server (one process, the shipped model) answers N concurrent keep-alive clients asking
   for 8 candidates each for S seconds: p50/p99 latency and requests per second.
2. The same weights evaluated by onnxruntime and by a numpy forward pass, for batches of 1,
   8 and 1,024 rows: median time per call and the ratio (numpy is the baseline).
Targets (issue 3): p99 <= 2 ms and >= 2,000 requests/s on one core.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time

import numpy as np
import onnx
from onnx import numpy_helper

from berth.recommender.features import NAMES
from berth.recommender.model import load
from berth.recommender.server import make_server

BODY = json.dumps(
    {
        "job": {"model": "resnet50", "batchSize": 256, "totalWork": {"iterations": 10_000}},
        "candidates": [
            {"accelerator": t, "count": c} for t in ("a100", "v100", "t4", "p100") for c in (1, 4)
        ],
    }
).encode()


def load_test(port: int, seconds: float, clients: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port)
        mine = []
        while time.perf_counter() < stop:
            began = time.perf_counter()
            connection.request("POST", "/v1/recommend", BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, len(latencies)


def numpy_forward(path: str):  # type: ignore[no-untyped-def]
    """The ensemble as numpy: each member's three layers, SiLU, its output scaling."""
    proto = onnx.load(path)
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    meta = {p.key: p.value for p in proto.metadata_props}
    scaling = json.loads(meta["berth.member_scaling"])

    def layer(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        return weights[f"members.{m}.net.{k}.weight"].T, weights[f"members.{m}.net.{k}.bias"]

    params = [
        (layer(m, 0), layer(m, 2), layer(m, 4), s["mean"], s["scale"])
        for m, s in enumerate(scaling)
    ]

    def silu(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = x / (1 + np.exp(-x))
        return out

    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = []
        for (w0, b0), (w1, b1), (w2, b2), y_mean, y_scale in params:
            raw = silu(silu(x @ w0 + b0) @ w1 + b1) @ w2 + b2
            rate = raw[:, :1] * y_scale + y_mean
            power = -np.logaddexp(0, -(raw[:, 1:] + 1.0))  # log-sigmoid
            outs.append(np.concatenate([rate, power], axis=1))
        stacked = np.stack(outs)
        return stacked.mean(axis=0), stacked.std(axis=0)

    return forward


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    server = make_server(load().path, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = int(server.server_address[1])
    latencies, done = load_test(port, args.seconds, args.clients)
    server.shutdown()
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"/v1/recommend, 8 candidates, {args.clients} keep-alive clients, {args.seconds:g} s:")
    print(f"  p50 {p50 * 1e3:.2f} ms  p99 {p99 * 1e3:.2f} ms  {done / args.seconds:.0f} requests/s"
          f"  (targets: p99 <= 2 ms, >= 2,000 requests/s)")  # fmt: skip

    model = load()
    forward = numpy_forward(str(model.path))
    print("inference of the same weights, median per call:")
    print(f"  {'rows':>5}  {'onnxruntime':>12}  {'numpy':>10}  ratio")
    rng = np.random.default_rng(0)
    for n in (1, 8, 1024):
        x = rng.normal(size=(n, len(NAMES))).astype(np.float32)
        ort_s = timed(lambda x=x: model.session.run(None, {"features": x}), 200)
        np_s = timed(lambda x=x: forward(x), 200)
        got = model.session.run(None, {"features": x})[0]
        assert np.allclose(got, forward(x)[0], atol=1e-3), "numpy and onnxruntime disagree"
        print(f"  {n:>5}  {ort_s * 1e6:>9.1f} us  {np_s * 1e6:>7.1f} us  {np_s / ort_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
