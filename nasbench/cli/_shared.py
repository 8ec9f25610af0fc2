"""Small helpers shared by the command modules: the console, common argument parsers, output paths."""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["StdoutClosed", "check_writable", "console", "echo", "input_shape_arg", "positive_int", "search_progress",
           "silence_stdout", "writing"]


class StdoutClosed(BrokenPipeError):
    """The reader of stdout went away (``nasbench describe x.json | head -1``): ``main`` ends quietly, exit 0."""


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that nothing more (not even Python's flush at exit) hits the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (e.g. captured output)
        pass


class _Console(Console):
    """A rich console whose closed pipe ends the command quietly (rich's own default exits 1)."""

    def on_broken_pipe(self) -> None:
        """Stop printing, silence stdout and raise ``StdoutClosed``."""
        self.quiet = True
        silence_stdout()
        raise StdoutClosed(errno.EPIPE, "the reader of stdout has gone")


def echo(text: str) -> None:
    """Write plain ``text`` (CSV, JSON) to stdout; a closed pipe raises ``StdoutClosed``."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        raise StdoutClosed(errno.EPIPE, "the reader of stdout has gone") from None


#: Everything the CLI prints goes through this console (stdout).
console = _Console(highlight=False, soft_wrap=True)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def input_shape_arg(text: str) -> tuple[int, int, int]:
    """argparse type: ``C,H,W`` such as ``3,32,32``."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}")
    return parts  # type: ignore[return-value]


def search_progress(info: str, quiet: bool = False) -> Progress:
    """A progress display for a search: description, bar, n/N, ``info`` (a rich template), elapsed, ETA."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(info),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=quiet)


def check_writable(path: str | Path, what: str, *, folder: bool = False) -> Path:
    """Refuse an output path that cannot be written, before any work starts; return it.

    The nearest existing folder on the way to ``path`` must accept a new file (tried by
    creating and removing a hidden probe file there, since permission bits alone do not tell
    for root or for ``/proc``); an existing file must be writable and, unless ``folder``,
    must not be a folder. Nothing else is created: missing folders are made by the write.

    Args:
        path: The file (or, with ``folder``, the folder) the command will write.
        what: How the user names it in the message, e.g. ``"--out"``.
        folder: ``path`` is a folder the command writes files into.

    Raises:
        ConfigError: one line naming the path and how to fix it.
    """
    from nasbench.errors import ConfigError

    p = Path(path).expanduser()
    fix = f"pass another {what}" if what.startswith("--") else "pass another path"
    probe_in = p
    try:
        if p.is_dir():
            if not folder:
                raise ConfigError(f"{what} {p} is a folder; {fix} naming a file inside it, e.g. {p / 'out.json'}")
        else:
            if folder and p.exists():
                raise ConfigError(f"{what} {p} is a file, not a folder; move it away or {fix}")
            if p.exists() and not os.access(p, os.W_OK):
                raise ConfigError(f"{what} {p} exists and is read-only; make it writable (chmod u+w) or {fix}")
            probe_in = p.parent
            while not probe_in.exists() and probe_in != probe_in.parent:
                probe_in = probe_in.parent
            if not probe_in.is_dir():
                raise ConfigError(f"cannot write {what} {p}: {probe_in} is a file, not a folder; {fix}")
        fd, probe = tempfile.mkstemp(prefix=".nasbench-write-test-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"cannot write {what} {p}: folder {probe_in} does not accept new files "
                          f"({exc.strerror or exc}); {fix} in a folder you can write to") from None
    return p


@contextmanager
def writing(path: str | Path, what: str, *, study: str | None = None, storage: str | None = None) -> Iterator[None]:
    """Turn an ``OSError`` of the write in the block into one line (a ``ConfigError``).

    With ``study``, the line says that the study is kept and how to export its answer again.
    """
    from nasbench.errors import ConfigError

    try:
        yield
    except OSError as exc:
        reason = f"could not write {what} {path} ({exc.strerror or exc})"
        if study is None:
            raise ConfigError(f"{reason}; free some space or pass another path") from None
        from nasbench.runner import DEFAULT_STORAGE, redact

        url = shlex.quote(redact(storage or DEFAULT_STORAGE))
        raise ConfigError(f"{reason}; every trial is kept in study {study!r}: write it again with 'nasbench export "
                          f"--study {shlex.quote(study)} --storage {url} --out PATH'") from None


#: ``--amp`` values (the library's ``AMP_MODES``).
AMP_CHOICES = ("auto", "off", "bf16")


def check_device(args: argparse.Namespace) -> None:
    """Refuse a ``--device`` or ``--amp`` this machine cannot run, before any work or study write.

    Skipped for a search answered from tables (``--benchmark``) and for one on a remote Ray
    cluster (``--address``), whose workers decide for themselves.
    """
    from nasbench.errors import ConfigError
    from nasbench.train import resolve_amp, resolve_device

    if getattr(args, "benchmark", None) or getattr(args, "address", None):
        return
    device = resolve_device(args.device)
    try:
        resolve_amp(args.amp, device)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("amp='bf16'", "--amp bf16").replace("amp 'auto' or 'off'",
                                                                               "--amp auto or --amp off")) from None
