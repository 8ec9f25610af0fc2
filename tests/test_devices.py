"""Every machine we claim: no oneDNN crash on AVX2, device decisions, generators on the batches' device.

The crash regressions run in a subprocess each, so that heap corruption fails one test with its
signal instead of killing the test run. CI also runs this file under ``ONEDNN_MAX_CPU_ISA=AVX2``
on machines with AVX-512 (``.ci/run``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import nasbench.train
import nasbench.train._trainer as trainer_module
from nasbench.data import Augmentation, iterate_batches, load_dataset
from nasbench.errors import ConfigError
from nasbench.hardware import cpu_isa, torch_threads
from nasbench.ofa import OFAConfig, OFATrainer
from nasbench.space import Block, Cell, CellSpace, Choice, MacroSpace, Stage
from nasbench.strategies._darts import DartsConfig, DartsSearch
from nasbench.train import (
    TrainConfig,
    batch_generator,
    channels_last_ok,
    place_data,
    resolve_amp,
    resolve_device,
    train_model,
)

NB201_OPS = {"none": "zero", "skip_connect": "skip", "nor_conv_3x3": "relu_conv_bn_3x3"}


def nb201(c: int, ops: dict[str, str] = NB201_OPS) -> CellSpace:
    return CellSpace(f"t{c}", [Cell("cell", ops, nodes=3)], skeleton="nb201", C=c, N=1)


def darts_space(c: int) -> CellSpace:
    ops = ["skip", "max_pool_3x3", "sep_conv_3x3"]
    return CellSpace(f"d{c}", [Cell("normal", ops, nodes=2, inputs=2), Cell("reduce", ops, nodes=2, inputs=2)],
                     skeleton="darts", C=c, layers=3)


# -- crash regressions (subprocess) ---------------------------------------------------------------

_PRELUDE = """
from nasbench.data import load_dataset
from nasbench.hardware import torch_threads
from nasbench.space import Block, Cell, CellSpace, Choice, MacroSpace, Stage
data = load_dataset("digits", limit=64)  # 1-channel 8x8 images
"""

_CASES = {
    # the reproduction, at the channel counts users run (4 crashed on AVX2)
    **{f"darts-nb201-C{c}": f"""
from nasbench.strategies._darts import DartsConfig, DartsSearch
T = CellSpace("t", [Cell("cell", {{"none": "zero", "skip_connect": "skip", "nor_conv_3x3": "relu_conv_bn_3x3"}},
              nodes=3)], skeleton="nb201", C={c}, N=1)
with torch_threads(1):
    DartsSearch(T, data, DartsConfig(epochs=1, batch_size=32, selection="alpha")).run()
""" for c in (4, 8, 16)},
    "darts-nb201-C4-parameter-free": """
from nasbench.strategies._darts import DartsConfig, DartsSearch
T = CellSpace("t", [Cell("cell", {"none": "zero", "skip_connect": "skip", "avg_pool_3x3": "avg_pool_3x3"}, nodes=3)],
              skeleton="nb201", C=4, N=1)
with torch_threads(1):
    DartsSearch(T, data, DartsConfig(epochs=1, batch_size=32, selection="alpha")).run()
""",
    **{f"darts-skeleton-C{c}": f"""
from nasbench.strategies._darts import DartsConfig, DartsSearch
ops = ["skip", "max_pool_3x3", "sep_conv_3x3"]
T = CellSpace("d", [Cell("normal", ops, nodes=2, inputs=2), Cell("reduce", ops, nodes=2, inputs=2)],
              skeleton="darts", C={c}, layers=3)
with torch_threads(1):
    DartsSearch(T, data, DartsConfig(epochs=1, batch_size=32, selection="alpha", unrolled=True)).run()
""" for c in (4, 8)},
    "ofa-C4": """
from nasbench.ofa import OFAConfig, OFATrainer
BLOCK = Block("mbconv", kernel_size=Choice([3, 5]), expansion=Choice([2, 3]), act="relu", se=True)
S = MacroSpace("ofa4", stem=Block("conv_3x3"), stem_width=4,
               stages=[Stage("a", BLOCK, width=4, depth=Choice([1, 2])), Stage("b", BLOCK, width=8, stride=2)])
with torch_threads(1):
    OFATrainer(S, data, OFAConfig(phases=(("full", 1), ("kernel", 1)), batch_size=32)).run()
""",
    "trainer-C4": """
from nasbench.train import TrainConfig, train_model
S = MacroSpace("train4", stem_width=4, stages=[Stage("a", Block("conv_3x3"), width=4),
                                               Stage("b", Block("mbconv", expansion=2), width=8, stride=2)])
model = S.build(S.sample(__import__("random").Random(0)), num_classes=data.num_classes, input_shape=data.input_shape)
with torch_threads(1):
    train_model(model, data, TrainConfig(epochs=1, batch_size=32), device="cpu")
""",
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_training_small_channel_counts_does_not_crash(case: str) -> None:
    code = _PRELUDE + textwrap.dedent(_CASES[case]) + "\nprint('finished')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MALLOC_CHECK_": "3"})
    if proc.returncode < 0:
        pytest.fail(f"{case} died with {signal.Signals(-proc.returncode).name} on {cpu_isa()['effective']}: "
                    f"{proc.stderr[-500:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("finished")


# -- the channels-last rule ------------------------------------------------------------------------

def _net(*channels: int) -> nn.Module:
    return nn.Sequential(*[nn.Conv2d(a, b, 3) for a, b in zip(channels, channels[1:])])


def test_channels_last_needs_every_conv_a_multiple_of_eight_on_cpu() -> None:
    assert channels_last_ok(_net(8, 16, 32), "cpu")
    assert not channels_last_ok(_net(8, 4, 8), "cpu")  # one 4-channel conv: oneDNN would pad its block
    assert not channels_last_ok(_net(16, 12), "cpu")  # 12 is not a whole block either
    stem = nn.Conv2d(1, 8, 3)
    net = nn.Sequential(stem, _net(8, 16))
    assert not channels_last_ok(net, "cpu")
    assert channels_last_ok(net, "cpu", exclude=[stem])
    assert channels_last_ok(_net(3, 4), "cuda")  # cuDNN has no such padding problem
    assert not channels_last_ok(_net(8, 16), "mps")
    assert not channels_last_ok(nn.Linear(3, 3), "cpu")  # nothing to gain without convs


@pytest.mark.parametrize("c,expected", [(4, False), (8, True), (16, True)])
def test_darts_supernet_uses_channels_last_only_where_safe(c: int, expected: bool) -> None:
    data = load_dataset("digits", limit=64)
    search = DartsSearch(nb201(c), data, DartsConfig(epochs=1, batch_size=32, selection="alpha"))
    stem_conv = search.net.net.stem[0]
    assert search.net.channels_last is expected
    assert stem_conv.weight.is_contiguous()  # the 1-channel stem always stays NCHW
    # (1x1 kernels are contiguous in both layouts: only larger ones tell)
    convs = [m for m in search.net.net.modules() if isinstance(m, nn.Conv2d) and m is not stem_conv
             and m.kernel_size != (1, 1)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) is expected for m in convs)
    seen = {}
    hook = search.net.net.cells.register_forward_pre_hook(lambda _m, inp: seen.update(x=inp[0]))
    x = torch.rand(4, *data.input_shape)
    with torch.no_grad():
        out = search.net(x)
    hook.remove()
    assert seen["x"].is_contiguous(memory_format=torch.channels_last) is expected
    search.net.set_channels_last(False)  # same function in either layout
    with torch.no_grad():
        torch.testing.assert_close(search.net(x), out, rtol=1e-4, atol=1e-5)


def test_darts_skeleton_stays_nchw_when_its_stem_output_is_not_a_block() -> None:
    # C=4 in the darts skeleton: stem 12 channels, cells 4: no channels-last
    data = load_dataset("digits", limit=64)
    assert not DartsSearch(darts_space(4), data, DartsConfig(epochs=1, batch_size=32)).net.channels_last
    assert DartsSearch(darts_space(8), data, DartsConfig(epochs=1, batch_size=32)).net.channels_last


# -- device and amp resolution (bad input is one line) ----------------------------------------------

def test_device_resolution_on_a_machine_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


def test_device_index_past_the_last_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"'cuda:3' does not exist; this machine has 1 CUDA device\(s\) \(cuda:0"):
        resolve_device("cuda:3")


def test_amp_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_amp("auto", "cpu") is None  # float32 on the CPU
    assert resolve_amp("off", "cpu") is None
    with pytest.raises(ConfigError, match="bf16.*the device is cpu"):
        resolve_amp("bf16", "cpu")
    with pytest.raises(ConfigError, match="unknown amp mode 'fp8'"):
        resolve_amp("fp8", "cpu")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))  # an H100
    assert resolve_amp("auto", "cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 0))  # a V100 only emulates bf16
    assert resolve_amp("auto", "cuda") is None
    monkeypatch.setattr("nasbench.train._device._cuda_bf16", lambda device: device.type == "cuda")
    assert resolve_amp("auto", "cuda") is torch.bfloat16
    assert resolve_amp("bf16", "cuda:0") is torch.bfloat16
    assert resolve_amp("off", "cuda") is None
    monkeypatch.setattr("nasbench.train._device._cuda_bf16", lambda device: False)  # e.g. a V100
    assert resolve_amp("auto", "cuda") is None
    with pytest.raises(ConfigError, match="this GPU has no bf16 support"):
        resolve_amp("bf16", "cuda")


def test_cli_amp_choices_are_the_library_modes() -> None:
    from nasbench.cli._shared import AMP_CHOICES

    assert AMP_CHOICES == nasbench.train.AMP_MODES


def test_components_refuse_bf16_on_cpu() -> None:
    data = load_dataset("digits", limit=64)
    with pytest.raises(ConfigError, match="bf16"):
        DartsSearch(nb201(4), data, DartsConfig(epochs=1), amp="bf16")
    with pytest.raises(ConfigError, match="bf16"):
        train_model(_tiny_model(data), data, TrainConfig(max_steps=1, amp="bf16"), device="cpu")


@pytest.mark.parametrize("flags", [["--device", "cuda"], ["--device", "cuda:3"], ["--amp", "bf16"]])
def test_cli_refuses_devices_it_lacks_before_touching_the_study(flags, tmp_path, capsys, monkeypatch) -> None:
    from nasbench.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    db = tmp_path / "s.db"
    for strategy in ("random", "darts", "ofa"):
        code = main(["search", "--strategy", strategy, "--budget", "1", "--storage", f"sqlite:///{db}",
                     "--study", "s", *flags])
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not db.exists()
    code = main(["train", str(tmp_path / "missing.json"), *flags])
    assert code == 2


# -- one helper for every random draw of the batch pipelines, on the batches' device ---------------

def test_batches_refuse_a_generator_on_another_device() -> None:
    x, y = torch.rand(8, 1, 8, 8), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="generator lives on cpu"):
        next(iterate_batches(x, y, 4, shuffle=True, generator=torch.Generator(), device="meta",
                             augmentation=Augmentation(crop_padding=1)))


class _RandomOps(TorchDispatchMode):
    """Records the seed of the generator every random op with an explicit generator draws from."""

    def __init__(self) -> None:
        super().__init__()
        self.seeds: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        g = (kwargs or {}).get("generator")
        if g is not None:
            self.seeds.append(g.initial_seed())
        return func(*args, **(kwargs or {}))


@pytest.fixture
def helper_generators(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """``batch_generator`` made to hand out marked seeds, recording the device it was asked for."""
    made: list[tuple[int, torch.device]] = []

    def recording(seed: int, device):  # noqa: ANN001, ANN202
        mark = 10**12 + len(made)
        made.append((mark, torch.device(device)))
        return batch_generator(mark, device)

    monkeypatch.setattr(nasbench.train, "batch_generator", recording)
    monkeypatch.setattr(trainer_module, "batch_generator", recording)
    return made


def _tiny_model(data) -> nn.Module:  # noqa: ANN001
    return nn.Sequential(nn.Conv2d(data.input_shape[0], 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, data.num_classes))


def _assert_pipeline_draws(made, ops: _RandomOps, device: torch.device) -> None:  # noqa: ANN001
    assert made, "the batch pipeline did not take its generator from batch_generator"
    assert {d for _, d in made} == {device}
    foreign = [s for s in ops.seeds if s not in {m for m, _ in made}]
    assert ops.seeds and not foreign, f"random draws from generators not made by batch_generator: {foreign}"


@pytest.mark.parametrize("who", ["darts", "ofa", "trainer"])
def test_every_batch_draw_uses_the_device_generator(who: str, helper_generators) -> None:  # noqa: ANN001
    data = load_dataset("digits", limit=64)  # augmented by default (random crop)
    device = torch.device("cpu")
    ops = _RandomOps()
    with torch_threads(1):
        if who == "darts":
            search = DartsSearch(nb201(8), data, DartsConfig(epochs=1, batch_size=32, selection="alpha"), device=device)
            with ops:
                search.train_epoch()
        elif who == "ofa":
            space = MacroSpace("g", stem_width=8, stages=[Stage("a", Block("mbconv", kernel_size=Choice([3, 5]),
                                                                          expansion=2), width=8)])
            trainer = OFATrainer(space, data, OFAConfig(phases=(("full", 1),), batch_size=32), device=device)
            with ops:
                trainer.train_epoch()
        else:
            with ops:
                train_model(_tiny_model(data), data, TrainConfig(max_steps=2, batch_size=32), device=device)
    _assert_pipeline_draws(helper_generators, ops, device)


def test_place_data_leaves_cpu_tensors_alone() -> None:
    t = torch.rand(4, 1, 8, 8)
    assert place_data(t, "cpu") is t
