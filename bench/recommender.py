"""Recommender speed: /v1/recommend over loopback on the server berth ships and on the one it
replaced, side by side; then onnxruntime against numpy.

    .venv/bin/python bench/recommender.py [--seconds S] [--old REV]

1. Each server runs as its own process, as in a pod (the shipped model): `berth
   serve-recommender` (Starlette on uvicorn); the http.server one of git revision REV (default
   625d603, the last with it) around today's route logic (the stacks alone compared); and REV
   as it was (its own route logic: the MLP only, no transfer). For 1 and 4 keep-alive clients,
   each its own process, asking for 8 candidates each for S seconds: p50/p99 latency and
   requests per second, and the new server's figures as ratios of both. Twice: the same
   question every time ("repeated", as a sweep's jobs and the operator's cycles ask: today's
   route logic answers it from its memo) and a question never asked before every time ("new":
   a fresh batch size each, so every answer is computed).
2. The same weights evaluated by onnxruntime and by a numpy forward pass, for batches of 1,
   8 and 1,024 rows: median time per call and the ratio (numpy is the baseline).
Targets (issue 19): p99 <= 2 ms and >= 2,000 requests/s. Clients and server share this
machine's cores: the figures are of both together.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from berth.recommender.features import NAMES
from berth.recommender.model import load

QUESTIONS = ("repeated", "new")


def body(batch: int = 256) -> bytes:
    return json.dumps(
        {
            "job": {"model": "resnet50", "batchSize": batch, "totalWork": {"iterations": 10_000}},
            "candidates": [
                {"accelerator": t, "count": c}
                for t in ("a100", "v100", "t4", "p100")
                for c in (1, 4)
            ],
        }
    ).encode()


OLD_MAIN = """
import sys
from pathlib import Path
import old_server
if sys.argv[3] == "today":  # the old HTTP stack around today's route logic (the transfer too)
    from berth.recommender.service import Service
    old_server.Service = Service
server = old_server.make_server(Path(sys.argv[1]), "127.0.0.1", int(sys.argv[2]))
print("serving", flush=True)
server.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(
    command: list[str], port: int, cwd: str | None, cores: set[int] | None
) -> Iterator[None]:
    pin = None if cores is None else (lambda: os.sched_setaffinity(0, cores))
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, preexec_fn=pin)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[:3]} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def client(
    port: int,
    stop: float,
    out: multiprocessing.Queue[list[float]],
    cores: set[int] | None,
    new: bool,
) -> None:
    if cores is not None:
        os.sched_setaffinity(0, cores)
    connection = http.client.HTTPConnection("127.0.0.1", port)
    mine = []
    # "new": a batch size drawn from 10 million each time (a repeat among a run's ~10^4
    # draws is rare: the memo answers next to none of them).
    draw = random.Random(os.getpid()).randrange
    same = body()
    while time.perf_counter() < stop:
        payload = body(draw(1, 10_000_001)) if new else same
        began = time.perf_counter()
        connection.request("POST", "/v1/recommend", payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        mine.append(time.perf_counter() - began)
    out.put(mine)


def load_test(
    port: int, seconds: float, clients: int, cores: set[int] | None = None, new: bool = False
) -> tuple[float, float, float]:
    """(p50 s, p99 s, requests/s) of `clients` processes asking for `seconds`."""
    queue: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
    stop = time.perf_counter() + seconds + 0.5  # the processes start in the first half second
    procs = [
        multiprocessing.Process(target=client, args=(port, stop, queue, cores, new))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    latencies = sorted(x for _ in procs for x in queue.get())
    for p in procs:
        p.join()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return latencies[len(latencies) // 2], p99, len(latencies) / seconds


def old_server(rev: str, folder: str) -> list[str]:
    source = subprocess.run(
        ["git", "show", f"{rev}:recommender/server.py"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent,
    ).stdout  # fmt: skip
    Path(folder, "old_server.py").write_text(source)
    return [sys.executable, "-c", OLD_MAIN]


def servers(rev: str, seconds: float, model: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    layouts: dict[str, tuple[set[int] | None, set[int] | None]] = {"shared": (None, None)}
    if len(cores) > 1:  # the server's own capacity: one core to itself, the clients elsewhere
        layouts["1 core"] = ({cores[0]}, set(cores[1:]))
    with tempfile.TemporaryDirectory() as folder:
        old = old_server(rev, folder)
        stacks: dict[str, Callable[[int], tuple[list[str], str | None]]] = {
            f"{rev} as it was": lambda port: ([*old, str(model), str(port), "then"], folder),
            "http.server": lambda port: ([*old, str(model), str(port), "today"], folder),
            "starlette+uvicorn": lambda port: (
                [sys.executable, "-m", "berth", "serve-recommender", "--model", str(model),
                 "--port", str(port)], None),
        }  # fmt: skip
        print(f"/v1/recommend, 8 candidates, keep-alive client processes, {seconds:g} s each;"
              f" server cores: shared = all {len(cores)} with the clients,"
              " 1 core = its own")  # fmt: skip
        print(f"  {'server':<22} {'cores':>6} {'questions':>9} {'clients':>7} {'p50 ms':>7}"
              f" {'p99 ms':>7} {'requests/s':>10}")  # fmt: skip
        results: dict[tuple[str, str, str, int], tuple[float, float, float]] = {}
        for layout, (server_cores, client_cores) in layouts.items():
            for name, make in stacks.items():
                port = free_port()
                command, cwd = make(port)
                with running(command, port, cwd, server_cores):
                    for questions in QUESTIONS:
                        for clients in (1, 4):
                            new = questions == "new"
                            load_test(port, 0.5, clients, client_cores, new)  # warm up
                            got = load_test(port, seconds, clients, client_cores, new)
                            results[name, layout, questions, clients] = got
                            print(f"  {name:<22} {layout:>6} {questions:>9} {clients:>7}"
                                  f" {got[0] * 1e3:>7.2f} {got[1] * 1e3:>7.2f}"
                                  f" {got[2]:>10.0f}")  # fmt: skip
        then, old_name, new_name = stacks
        for base, what in ((old_name, "the same route logic"), (then, f"{rev} as it was")):
            print(f"  starlette+uvicorn over http.server with {what}:")
            for layout in layouts:
                for questions in QUESTIONS:
                    for clients in (1, 4):
                        o = results[base, layout, questions, clients]
                        n = results[new_name, layout, questions, clients]
                        print(f"    {layout}, {questions}, {clients} client(s):"
                              f" p50 {n[0] / o[0]:.2f}x  p99 {n[1] / o[1]:.2f}x"
                              f"  requests/s {n[2] / o[2]:.2f}x")  # fmt: skip
        print("  targets: p99 <= 2 ms, >= 2,000 requests/s")


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
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--old",
        default="625d603",
        metavar="REV",
        help="git revision of the http.server recommender (default 625d603)",
    )
    args = parser.parse_args()
    model = load()
    servers(args.old, args.seconds, model.path)

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
