"""A real training loop for `berth profile` that needs no download: torchvision's ResNet-50 or a
BERT built from a `transformers` config, random weights and synthetic inputs, SGD, on one
device. It reports every step's samples through berth's progress contract.

    python examples/profile/train_step.py --model resnet50 --batch-size 64 --seconds 60
    python examples/profile/train_step.py --model bert --batch-size 32 --seconds 60 --amp

The first --warmup steps (cuDNN autotuning, allocator growth) are not reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from berth.profiler.progress import Progress

SEQUENCE = 128  # BERT's tokens per sample: the length berth's bert family is defined at


def build(model: str, batch: int, device: torch.device) -> tuple[Any, Any]:
    """(module, a function that runs one training step and returns its loss)."""
    if model == "resnet50":
        import torchvision

        net = torchvision.models.resnet50(weights=None).to(device)
        x = torch.randn(batch, 3, 224, 224, device=device)
        y = torch.randint(0, 1000, (batch,), device=device)

        def loss() -> Any:
            return torch.nn.functional.cross_entropy(net(x), y)

        return net, loss
    if model == "bert":
        from transformers import BertConfig, BertForSequenceClassification

        net = BertForSequenceClassification(BertConfig(num_labels=2)).to(device)  # BERT-base
        ids = torch.randint(0, net.config.vocab_size, (batch, SEQUENCE), device=device)
        labels = torch.randint(0, 2, (batch,), device=device)

        def loss() -> Any:
            return net(input_ids=ids, labels=labels).loss

        return net, loss
    raise SystemExit(f"unknown --model {model!r}: resnet50 or bert")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=["resnet50", "bert"])
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time")
    parser.add_argument("--warmup", type=int, default=5, help="steps not reported")
    parser.add_argument("--amp", action="store_true", help="mixed precision (fp16 autocast)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    net, step_loss = build(args.model, args.batch_size, device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(enabled=args.amp)
    progress = Progress(args.model, args.batch_size)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
            loss = step_loss()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    stop = time.monotonic() + args.seconds
    steps = 0
    while time.monotonic() < stop:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # a step is counted when it is done, not when queued
        progress.advance(args.batch_size)
        steps += 1
    print(f"{args.model} batch {args.batch_size}: {steps} steps on {device}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
