"""``nasbench train``: retrain an exported architecture from scratch and save its weights."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from nasbench.cli._shared import (
    AMP_CHOICES,
    check_device,
    check_writable,
    console,
    positive_int,
    writing,
)

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the CLI."""
    p = sub.add_parser("train", help="retrain an architecture JSON from scratch; report test accuracy, save weights")
    p.add_argument("path", help="architecture JSON (from search, export or sample)")
    p.add_argument("--dataset", default="digits", help="NAME[:PATH] (default digits)")
    p.add_argument("--epochs", type=float, default=10.0)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--optimizer", default="sgd", help="sgd | adamw")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--amp", default="auto", choices=AMP_CHOICES,
                   help="mixed precision: auto (bf16 on a CUDA GPU with bf16, else float32; default) | off | bf16")
    p.add_argument("--limit", type=positive_int, default=None, help="cap every split at this many images")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    import torch

    from nasbench.data import load_dataset
    from nasbench.export import load_architecture, write_architecture
    from nasbench.train import TrainConfig, train_model

    check_device(args)
    arch = load_architecture(args.path)
    check_writable(args.path, "the architecture file")  # metrics are added to it
    check_writable(Path(args.path).with_suffix(".safetensors"), "the weights file")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                         label_smoothing=args.label_smoothing, amp=args.amp)
    data = load_dataset(args.dataset, seed=args.seed, limit=args.limit)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(args.seed)
        model = arch.build(num_classes=data.num_classes, input_shape=data.input_shape, load_weights=False)
    console.print(f"training {args.path} ({arch.genome.space}, genome {arch.genome.hash}) on {data.name} "
                  f"for {args.epochs:g} epochs")
    result = train_model(model, data, config, seed=args.seed, device=args.device, evaluate_test=True)
    metrics = {**arch.metrics, **{f"retrain_{k}": v for k, v in result.to_dict().items()},
               "retrain_dataset": args.dataset, "retrain_seed": args.seed}
    new = dataclasses.replace(arch, metrics=metrics, num_classes=data.num_classes, input_shape=data.input_shape)
    with writing(args.path, "the architecture file (or its weights)"):
        written = write_architecture(args.path, new, weights=model)
    console.print(f"val accuracy {result.val_accuracy:.4f}  test accuracy {result.test_accuracy:.4f}  "
                  f"({result.train_seconds:.1f} s, {result.params:,} params)")
    console.print(f"weights saved to {written.weights_path}; metrics added to {args.path}")
    return 0
