"""``nasbench doctor``: check every path on one device for a few steps; exit 0 only if all pass."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from nasbench.cli._shared import console

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``doctor`` to the CLI."""
    p = sub.add_parser("doctor", help="run every path (training, DARTS, OFA, latency, study, Ray) for a few steps",
                       description="Run every path of nasbench on one device for a few steps and print a table "
                                   "of what works. Exit code 0 when every check passes, 1 when one failed, "
                                   "2 on bad input (e.g. --device cuda without CUDA).")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto: CUDA when available)")
    p.add_argument("--ray", action="store_true", help="also run a Ray task (one GPU reserved on CUDA)")
    p.add_argument("--json", action="store_true", help="print the platform and results as JSON")
    p.set_defaults(handler=_doctor)


def _platform_lines(info: dict[str, Any]) -> list[str]:
    from rich.markup import escape

    isa_flags = " ".join(info.get("cpu_isa_flags") or []) or "none reported"
    lines = [
        f"device   {info['device']} ({info['device_name']})",
        f"torch    {info['torch']} (python {info['python']}), torch threads: {info['threads']}",
        f"CPU      {info['cpu']}; ISA {info['cpu_isa']} (flags: {isa_flags})",
        f"CUDA     {info['cuda'] or '-'}, cuDNN {info['cudnn'] or '-'}, GPUs: {info['gpus']}"
        + (f", bf16 {'yes' if info['bf16'] else 'no'}" if "bf16" in info else ""),
        f"Ray      {info['ray'] or 'not installed'}",
    ]
    if info.get("load_1m") is not None:
        busy = " (busy: timings will be slower than on an idle machine)" if info["load_1m"] > info["cpus"] else ""
        lines.append(f"load     {info['load_1m']:.2f} on {info['cpus']} cores (1-minute average){busy}")
    return [escape(line) for line in lines]


def _doctor(args: argparse.Namespace) -> int:
    from nasbench.doctor import CheckResult, machine_load, run_doctor
    from nasbench.hardware import cpu_isa, platform_info
    from nasbench.train import resolve_device

    device = resolve_device(args.device)  # bad input: one line, exit 2, before anything runs
    if not args.json:
        for line in _platform_lines({**platform_info(device), "cpu_isa_flags": cpu_isa()["flags"], **machine_load()}):
            console.print(line)
    status = None if args.json else console.status("starting")

    def progress(name: str, result: CheckResult | None) -> None:
        if status is not None and result is None:
            status.update(f"checking {name}")

    if status is not None:
        with status:
            report = run_doctor(device, ray=args.ray, on_check=progress)
    else:
        report = run_doctor(device, ray=args.ray)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    table = Table(title=f"nasbench doctor on {report.platform['device']}")
    table.add_column("path")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    table.add_column("images/s", justify="right")
    for c in report.checks:
        table.add_row(c.name, "ok" if c.ok else f"[red]FAILED[/red] {_escape(c.reason)}", f"{c.seconds:.2f}",
                      _rate(c.images_per_s))
    console.print(table)
    failed = report.failed
    if failed:
        console.print(f"{len(failed)} of {len(report.checks)} checks FAILED in {report.seconds:.1f} s "
                      "(--debug shows their tracebacks in the log)")
        return 1
    console.print(f"all {len(report.checks)} checks passed in {report.seconds:.1f} s")
    return 0


def _rate(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
