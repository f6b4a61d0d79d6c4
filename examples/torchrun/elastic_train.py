"""An elastic PyTorch training script that berth can grow, shrink and move: run it with torchrun
(berth sets every PET_* variable on the worker) and it trains at whatever world size the
rendezvous forms, keeps its place in a checkpoint, and reports progress by berth's contract.

What it does for that, and what any script of yours must do too:
- resume on start: load the latest checkpoint (samples done, model, optimiser) if there is one;
- save on SIGTERM: berth deletes a worker (shrink, move) and torchrun restarts workers (grow)
  with SIGTERM; the handler only sets a flag, all ranks agree on it at the next step (one
  all-reduce), rank 0 saves, and then they exit, so nothing is lost within the grace period;
- any world size: each step takes the next `world * batch` samples, rank r the r-th slice;
- the progress contract: samples this process did, counted once each (berth.profiler.progress,
  or the same lines written by hand where berth is not installed).

`--report-dir` appends one JSON line per event (formed, checkpoint, exit) for each process: the
workers' own account of the world they ran in, which berth's tests assert on.

    torchrun examples/torchrun/elastic_train.py --checkpoint-dir /ckpt --total-samples 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

PEER_LEFT = 75  # EX_TEMPFAIL: a peer is leaving; torchrun re-forms the group without it


class Reporter:
    def __init__(self, folder: str | None, generation: str, rank: int) -> None:
        self.path = Path(folder) / f"{generation}-r{rank}.jsonl" if folder else None
        self.base = {"generation": generation, "rank": rank, "host": socket.gethostname()}

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": time.time(), **self.base, **fields})
        print(line, flush=True)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")


class Counted:
    """The progress contract: berth's Progress where berth is installed, else its file lines."""

    def __init__(self, family: str, batch: int, world: int, path: Path | None) -> None:
        if path is not None:
            os.environ["BERTH_PROGRESS_FILE"] = str(path)
        self.done = 0
        try:
            from berth.profiler.progress import Progress
        except ImportError:
            self.progress = None
            self.file = path.open("a", encoding="utf-8") if path else None
        else:
            self.progress = Progress(family, batch, world_size=world)

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress.advance(n)
        elif self.file is not None:
            self.file.write(f"{time.time():.6f} {self.done}\n")
            self.file.flush()


def load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state: dict[str, Any] = torch.load(path, weights_only=True)
    return state


def save(path: Path, state: dict[str, Any]) -> None:
    """Whole or not at all: a reader never sees a half-written checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def batch(start: int, n: int, features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i is the same data whoever trains it (seeded by its index)."""
    g = torch.Generator().manual_seed(start)
    x = torch.randn(n, features, generator=g)
    return x, x.sum(dim=1, keepdim=True).sin()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--total-samples", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=32, help="per worker process")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="steps")
    parser.add_argument("--step-seconds", type=float, default=0.0, help="pad each step (demos)")
    parser.add_argument("--family", default="mlp")
    parser.add_argument("--report-dir")
    parser.add_argument("--progress-dir", help="one progress-contract file per process here")
    args = parser.parse_args()

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(time.time()))

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # A peer that vanishes without a word must fail this step in a minute, not gloo's 30.
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda" if cuda else "cpu")
    named = [uuid.uuid4().hex[:12] if rank == 0 else None]
    dist.broadcast_object_list(named, src=0)
    generation = str(named[0])
    report = Reporter(args.report_dir, generation, rank)

    features = 16
    model = nn.Sequential(nn.Linear(features, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    path = Path(args.checkpoint_dir) / "latest.pt"
    state = load(path)
    samples, step = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        samples, step = int(state["samples"]), int(state["step"])
    ddp = nn.parallel.DistributedDataParallel(model)
    progress_file = Path(args.progress_dir) / f"{generation}-r{rank}.progress" if (
        args.progress_dir
    ) else None  # fmt: skip
    counted = Counted(args.family, args.batch_size, world, progress_file)
    report("formed", world=world, samples=samples, step=step,
           restarts=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))  # fmt: skip

    def checkpoint() -> None:
        if rank == 0:
            save(path, {"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                        "samples": samples, "step": step})  # fmt: skip
            report("checkpoint", samples=samples, step=step)

    while samples < args.total_samples:
        began = time.monotonic()
        start = samples + rank * args.batch_size
        mine = max(0, min(args.batch_size, args.total_samples - start))
        x, y = batch(start, max(mine, 1), features)
        loss = nn.functional.mse_loss(ddp(x.to(device)), y.to(device)) * (mine > 0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        samples = min(samples + world * args.batch_size, args.total_samples)
        step += 1
        counted.advance(mine)
        time.sleep(max(0.0, args.step_seconds - (time.monotonic() - began)))
        flag = torch.tensor([1 if stopping else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        if flag.item():
            checkpoint()
            dist.barrier()
            # Not told itself: a peer is leaving. Wait a moment for our own SIGTERM (a grow
            # restarts every worker) before exiting as failed (a shrink re-forms without it).
            end = time.monotonic() + 2
            while not stopping and time.monotonic() < end:
                time.sleep(0.05)
            report("exit", samples=samples, step=step, counted=counted.done,
                   reason="terminated" if stopping else "peer left")  # fmt: skip
            dist.destroy_process_group()
            return 0 if stopping else PEER_LEFT
        if step % args.checkpoint_every == 0:
            checkpoint()
    checkpoint()
    report("exit", samples=samples, step=step, counted=counted.done, reason="done")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
