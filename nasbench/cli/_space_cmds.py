"""``nasbench spaces``, ``nasbench sample`` and ``nasbench describe``."""

from __future__ import annotations

import argparse

from rich.table import Table

from nasbench.cli._shared import check_writable, console, input_shape_arg, positive_int, writing

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the space commands to the CLI."""
    p = sub.add_parser("spaces", help="list the built-in spaces with their sizes")
    p.set_defaults(handler=_spaces)

    p = sub.add_parser("ops", help="list the operation registry with each op's params")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'conv*'")
    p.set_defaults(handler=_ops)

    p = sub.add_parser("sample", help="sample an architecture of a space and write its JSON")
    p.add_argument("--space", default="resnet", help="built-in space name or path to a .py file defining SPACE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-classes", type=positive_int, default=10)
    p.add_argument("--input-shape", type=input_shape_arg, default=(3, 32, 32), help="C,H,W (default 3,32,32)")
    p.add_argument("--out", default="arch.json")
    p.set_defaults(handler=_sample)

    p = sub.add_parser("describe", help="params, FLOPs and a layer table of an exported architecture")
    p.add_argument("path", help="architecture JSON (from sample, export or search)")
    p.add_argument("--depth", type=positive_int, default=2, help="module depth of the layer table")
    p.set_defaults(handler=_describe)


def _spaces(args: argparse.Namespace) -> int:
    from nasbench._spaces import list_spaces, load_space

    table = Table(title="built-in spaces")
    for col in ("name", "kind", "decisions", "size", "description"):
        table.add_column(col)
    for name in list_spaces():
        s = load_space(name)
        table.add_row(name, s.kind, str(len(s.decisions)), _size(s.size), s.description)
    console.print(table)
    return 0


def _ops(args: argparse.Namespace) -> int:
    from nasbench.ops import list_ops, op_spec

    table = Table(title="operations")
    for col in ("name", "params (defaults)", "description"):
        table.add_column(col)
    for name in list_ops(args.pattern):
        spec = op_spec(name)
        params = ", ".join(f"{k}={v}" for k, v in spec.params.items())
        table.add_row(name, params, spec.doc)
    console.print(table)
    return 0


def _sample(args: argparse.Namespace) -> int:
    from nasbench._spaces import load_space
    from nasbench.export import save_architecture

    check_writable(args.out, "--out")
    space = load_space(args.space)
    genome = space.sample(args.seed)
    with writing(args.out, "--out"):
        save_architecture(args.out, genome, space=space, num_classes=args.num_classes, input_shape=args.input_shape)
    console.print(f"wrote {args.out}: space {space.name}, genome {genome.hash}, {len(genome)} decisions")
    return 0


def _describe(args: argparse.Namespace) -> int:
    from nasbench.export import load_architecture
    from nasbench.hardware import count_flops, count_params, layer_summary

    arch = load_architecture(args.path)
    model = arch.build()
    rows = layer_summary(model, arch.input_shape, depth=args.depth)
    table = Table(title=f"{args.path}: space {arch.genome.space}, genome {arch.genome.hash}")
    for col in ("layer", "type", "output", "params", "MACs"):
        table.add_column(col, justify="right" if col in ("params", "MACs") else "left")
    for r in rows:
        table.add_row(r["name"], r["type"], "x".join(map(str, r["out_shape"])), f"{r['params']:,}", f"{r['flops']:,}")
    console.print(table)
    params, flops = count_params(model), count_flops(model, arch.input_shape)
    shape = "x".join(map(str, arch.input_shape))
    console.print(f"params {params:,}  |  MACs {flops:,} per {shape} image  |  classes {arch.num_classes}")
    for k, v in arch.metrics.items():
        console.print(f"{k}: {v}")
    return 0


def _size(n: int) -> str:
    return f"{n:,}" if n < 10**7 else f"{n:.2e}"
