"""Shared fixtures: a tiny user-written macro space, a user space file, single-threaded torch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nasbench.space import Block, Choice, MacroSpace, Stage

#: Source of a user's space file, as ``nasbench search --space my_space.py`` would load it.
USER_SPACE_SOURCE = '''
from nasbench.space import Block, Choice, MacroSpace, Stage

SPACE = MacroSpace(
    "user_file_space",
    stem_width=8,
    stages=[
        Stage("s1", Block("conv_3x3"), width=Choice([8, 16]), depth=Choice([1, 2]), stride=2),
        Stage("s2", Block("mbconv", kernel_size=Choice([3, 5]), expansion=2), width=16, stride=2),
    ],
)
'''


@pytest.fixture(scope="session")
def tiny_space() -> MacroSpace:
    """A small space with every DSL feature: width, depth, op choice with op-specific params."""
    mb = {"kernel_size": Choice([3, 5]), "expansion": Choice([2, 3])}
    return MacroSpace(
        "tiny",
        stem_width=Choice([4, 8]),
        stages=[
            Stage("a", Block.choice({"conv_3x3": {}, "mbconv": mb}), width=Choice([4, 8]),
                  depth=Choice([1, 2]), stride=2),
            Stage("b", Block("dwsep_conv", kernel_size=Choice([3, 5])), width=8),
        ],
    )


@pytest.fixture
def user_space_file(tmp_path: Path) -> Path:
    """A ``.py`` file defining ``SPACE``, in a fresh directory."""
    path = tmp_path / "my_space.py"
    path.write_text(USER_SPACE_SOURCE)
    return path


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: tiny models gain nothing from threads, and spin-waiting
    threads slow these tests tenfold when other processes share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet_optuna():
    """Optuna logs every in-memory study it creates at INFO; keep test output readable."""
    import optuna

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(old)


@pytest.fixture(scope="module")
def _empty_db(tmp_path_factory):
    """An SQLite file with Optuna's schema and no study (creating the schema costs ~1 s; copying it ~0)."""
    from nasbench.runner import open_storage

    path = tmp_path_factory.mktemp("template") / "empty.db"
    open_storage(f"sqlite:///{path}").remove_session()
    return path


def run_main(args: list[str], capsys) -> tuple[int, str, str]:  # noqa: ANN001
    """``nasbench ARGS`` in-process: (exit code, stdout, stderr)."""
    from nasbench.cli import main

    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err
