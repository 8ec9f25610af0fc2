"""Once-for-All: elastic layers, subnet extraction, progressive shrinking, constrained sampling, CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import run_main

from nasbench.errors import ConfigError, SpaceError
from nasbench.ofa import (
    OFAConfig,
    OFASupernet,
    OFATrainer,
    largest_subnet,
    phase_kinds,
    recalibrate_bn,
    sample_constrained,
    sample_subnet,
    smallest_subnet,
)
from nasbench.ops import MBConv
from nasbench.space import Block, MacroSpace, Stage
from nasbench.space._macro import round_channels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_SPACE_SOURCE = '''
from nasbench.space import Block, Choice, MacroSpace, Stage

BLOCK = Block("mbconv", kernel_size=Choice([3, 5, 7]), expansion=Choice([2, 3]), act="relu", se=True)
SPACE = MacroSpace(
    "tiny_ofa", stem=Block("conv_3x3", act="hswish"), stem_width=8,
    stages=[Stage("a", Block("mbconv", kernel_size=3, expansion=1, act="relu"), width=8),
            Stage("b", BLOCK, width=8, depth=Choice([1, 2])),
            Stage("c", BLOCK, width=16, depth=Choice([1, 2, 3]), stride=2)],
    head=Block("conv_1x1", act="hswish"), head_width=32, width_multiplier=Choice([0.5, 1.0]))
'''


def tiny_space() -> MacroSpace:
    scope: dict = {}
    exec(TINY_SPACE_SOURCE, scope)  # the same space the CLI test loads from a file
    return scope["SPACE"]


def _randomize(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and kernel transforms, so that slicing mistakes show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
        for name, p in net.named_parameters():
            if "transforms" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def data():
    from nasbench.data import load_dataset

    return load_dataset("digits", seed=0, limit=256)


def test_kernel3_weights_are_the_transformed_centre_of_kernel7():
    space = tiny_space()
    net = OFASupernet(space, 10, (1, 8, 8))
    _randomize(net)
    dw = net.stages[1][0].depthwise
    w7 = dw.conv.weight.detach()
    t75, t53 = dw.transforms["7to5"].detach(), dw.transforms["5to3"].detach()
    c = w7.shape[0]
    w5 = (w7[:, :, 1:6, 1:6].reshape(c, 25) @ t75.T).reshape(c, 1, 5, 5)
    w3 = (w5[:, :, 1:4, 1:4].reshape(c, 9) @ t53.T).reshape(c, 1, 3, 3)
    values = {**dict(largest_subnet(space).values), "b.b0.kernel_size": 3}
    model = net.extract(space.genome(values))
    got = model.blocks[1].depthwise.conv.weight
    assert got.shape == (got.shape[0], 1, 3, 3)
    torch.testing.assert_close(got, w3[: got.shape[0]])
    assert not torch.allclose(got, w7[: got.shape[0], :, 2:5, 2:5])  # the transform is really applied
    assert got.data_ptr() != w7.data_ptr()


@pytest.mark.parametrize("space_name", ["tiny", "mobilenetv3"])
def test_extracted_subnet_computes_what_the_supernet_computes(space_name):
    from nasbench import load_space

    space = tiny_space() if space_name == "tiny" else load_space("mobilenetv3")
    shape = (1, 8, 8) if space_name == "tiny" else (3, 32, 32)
    net = OFASupernet(space, 10, shape).eval()
    _randomize(net)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    rng = random.Random(0)
    for g in [largest_subnet(space), smallest_subnet(space)] + [sample_subnet(space, rng) for _ in range(3)]:
        model = net.extract(g).eval()
        net.set_active(g)
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x), rtol=1e-5, atol=1e-5)
        # copies, not views: changing the subnet leaves the supernet alone
        before = net.stem.conv.weight.detach().clone()
        with torch.no_grad():
            model.stem.conv.weight.add_(1.0)
        torch.testing.assert_close(net.stem.conv.weight.detach(), before)


def test_depth_expansion_and_width_slicing_give_the_documented_shapes():
    space = tiny_space()
    net = OFASupernet(space, 10, (1, 8, 8))
    values = {**dict(smallest_subnet(space).values)}
    values.update({"c.depth": 2, "c.b0.expansion": 3, "c.b1.expansion": 2, "c.b0.kernel_size": 5, "width_mult": 0.5})
    genome = space.fill(values, seed=0)
    model = net.extract(genome)
    blocks = [b for b in model.blocks if isinstance(b, MBConv)]
    assert len(blocks) == 1 + 1 + 2  # stage a fixed at 1, b at its minimum depth 1, c at depth 2
    w_b, w_c = round_channels(8 * 0.5), round_channels(16 * 0.5)
    c0 = blocks[3 - 1]
    assert c0.expand.conv.out_channels == round(w_b * 3)  # mid = round(C_in * expansion)
    assert c0.depthwise.conv.kernel_size == (5, 5)
    assert c0.project.conv.out_channels == w_c
    c1 = blocks[3]
    assert c1.expand.conv.in_channels == w_c and c1.expand.conv.out_channels == round(w_c * 2)
    assert model.stem.conv.out_channels == round_channels(8 * 0.5)
    assert model.head.conv.in_channels == w_c and model.head.conv.out_channels == 32
    # the same module space.build makes: the state dicts line up key for key
    assert model.state_dict().keys() == space.build(genome, 10, (1, 8, 8)).state_dict().keys()


def _built_and_copied(net: OFASupernet, genome) -> torch.nn.Module:
    """The extraction before blueprints: ``space.build`` (random init, RNG kept), then every slice copied in."""

    def conv(src, dst):
        dst.conv.weight.copy_(src.weight_for(dst.conv.in_channels, dst.conv.out_channels, dst.conv.kernel_size[0]))
        c = dst.bn.num_features
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst.bn, name).copy_(getattr(src.bn, name)[:c])
        dst.bn.num_batches_tracked.copy_(src.bn.num_batches_tracked)

    with torch.random.fork_rng(devices=[]):
        model = net.space.build(genome, net.num_classes, net.input_shape)
    arch = net.set_active(genome)
    counts = dict.fromkeys(net._stage_names, 0)
    with torch.no_grad():
        conv(net.stem, model.stem)
        for dst, b in zip(model.blocks, arch["blocks"]):
            src = net.stages[net._stage_names.index(b["stage"])][counts[b["stage"]]]
            counts[b["stage"]] += 1
            if dst.expand is not None:
                conv(src.expand, dst.expand)
            conv(src.depthwise, dst.depthwise)
            if dst.se is not None:
                h, mid = dst.se.reduce.out_channels, dst.se.reduce.in_channels
                dst.se.reduce.weight.copy_(src.se.reduce.weight[:h, :mid])
                dst.se.reduce.bias.copy_(src.se.reduce.bias[:h])
                dst.se.expand.weight.copy_(src.se.expand.weight[:mid, :h])
                dst.se.expand.bias.copy_(src.se.expand.bias[:mid])
            conv(src.project, dst.project)
        conv(net.head, model.head)
        model.classifier.weight.copy_(net.classifier.weight[:, : model.classifier.in_features])
        model.classifier.bias.copy_(net.classifier.bias)
    return model.train(net.training)


def _assert_same_module(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Same classes, attributes, modes, state-dict keys and tensors bit for bit (dtype, shape, strides too)."""
    mods_a, mods_b = dict(a.named_modules()), dict(b.named_modules())
    assert list(mods_a) == list(mods_b)
    for name, ma in mods_a.items():
        mb = mods_b[name]
        assert type(ma) is type(mb) and ma.training == mb.training, name
        assert list(vars(ma)) == list(vars(mb)), name
        for k, v in vars(ma).items():
            if k not in ("_parameters", "_buffers", "_modules"):
                assert v == vars(mb)[k], (name, k)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k, x in sa.items():
        y = sb[k]
        assert (x.dtype, x.shape, x.stride(), x.device) == (y.dtype, y.shape, y.stride(), y.device), k
        assert torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)), k
    assert [(n, p.requires_grad, p.is_leaf) for n, p in a.named_parameters()] == \
        [(n, p.requires_grad, p.is_leaf) for n, p in b.named_parameters()]


@pytest.mark.parametrize("space_name", ["tiny", "mobilenetv3"])
def test_extract_is_exactly_the_built_subnet_with_the_weights_copied_in(space_name):
    """The fast extraction (blueprints, no init) equals building the subnet and copying into it, bit for bit."""
    from nasbench import load_space

    space = tiny_space() if space_name == "tiny" else load_space("mobilenetv3")
    shape = (1, 8, 8) if space_name == "tiny" else (3, 32, 32)
    net = OFASupernet(space, 10, shape)
    _randomize(net)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.num_batches_tracked.fill_(5)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    rng = random.Random(2)
    genomes = [largest_subnet(space), smallest_subnet(space)] + [sample_subnet(space, rng) for _ in range(6)]
    rng_state = torch.get_rng_state()
    supernet_ptrs = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
    for training in (True, False):
        net.train(training)
        for g in genomes + genomes[:2]:  # the second time from the blueprint cache
            fast, slow = net.extract(g), _built_and_copied(net, g)
            _assert_same_module(fast, slow)
            tensors = [*fast.parameters(), *fast.buffers()]
            assert not any(t.is_meta for t in tensors)
            assert all(t.device == net.classifier.weight.device and t.is_contiguous() for t in tensors)
            ptrs = [t.untyped_storage().data_ptr() for t in tensors]
            assert len(set(ptrs)) == len(ptrs) and not set(ptrs) & supernet_ptrs  # own storage, not views
            assert not any(type(m).__module__.startswith("nasbench.ofa") for m in fast.modules())
            fast.eval(), slow.eval()
            with torch.no_grad():
                assert torch.equal(fast(x), slow(x))
    assert torch.equal(torch.get_rng_state(), rng_state)  # no random numbers drawn
    # the module space.build makes, loadable without any OFA code
    g = genomes[-1]
    space.build(g, 10, shape).load_state_dict(net.extract(g).state_dict(), strict=True)


def test_extract_sees_weight_changes_after_its_caches_are_filled():
    """Blueprints, slice lists and computed kernels are reused; trained or reloaded weights still come through."""
    space = tiny_space()
    net = OFASupernet(space, 10, (1, 8, 8)).eval()
    _randomize(net)
    values = {**dict(largest_subnet(space).values), "b.b0.kernel_size": 3, "c.b0.kernel_size": 5}
    genome = space.genome(values)
    _assert_same_module(net.extract(genome), _built_and_copied(net, genome))
    # an optimizer step on everything (depthwise weights and kernel transforms included)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.set_active(genome)
    net(torch.randn(2, 1, 8, 8)).square().mean().backward()
    opt.step()
    _assert_same_module(net.extract(genome), _built_and_copied(net, genome))
    # in-place edits, a reload and a new expansion order
    with torch.no_grad():
        net.stages[1][0].depthwise.transforms["5to3"].mul_(1.5)
    _assert_same_module(net.extract(genome), _built_and_copied(net, genome))
    other = OFASupernet(space, 10, (1, 8, 8)).eval()
    _randomize(other, seed=3)
    net.load_state_dict(other.state_dict())
    net.sort_channels()
    _assert_same_module(net.extract(genome), _built_and_copied(net, genome))
    # replacing a weight (not in place) is seen too; writes through .data need clear_kernel_cache
    dw = net.stages[1][0].depthwise
    dw.conv.weight = torch.nn.Parameter(dw.conv.weight.detach() * 2)
    _assert_same_module(net.extract(genome), _built_and_copied(net, genome))
    dw.conv.weight.data.mul_(3)
    dw.clear_kernel_cache()
    _assert_same_module(net.extract(genome), _built_and_copied(net, genome))
    # a copied or pickled supernet (caches included) extracts its own weights
    import copy
    import pickle

    for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        with torch.no_grad():
            twin.stages[1][0].depthwise.conv.weight.add_(1.0)
        _assert_same_module(twin.extract(genome), _built_and_copied(twin, genome))
        assert not torch.equal(twin.extract(genome).blocks[1].depthwise.conv.weight,
                               net.extract(genome).blocks[1].depthwise.conv.weight)


def test_sorting_expanded_channels_keeps_the_full_network_function():
    space = tiny_space()
    net = OFASupernet(space, 10, (1, 8, 8)).eval()
    _randomize(net)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = net(x).clone()
        proj = net.stages[2][0].project.conv.weight.clone()
    net.sort_channels()
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-5)
    importance = net.stages[2][0].project.conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])
    assert not torch.equal(net.stages[2][0].project.conv.weight, proj)  # the order did change


def test_sorting_also_orders_the_squeeze_excite_hidden_units_by_importance():
    space = tiny_space()
    net = OFASupernet(space, 10, (1, 8, 8)).eval()
    _randomize(net)
    net.set_active(largest_subnet(space))
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    blocks = [b for stage in net.stages for b in stage if b.se is not None]
    assert blocks
    with torch.no_grad():
        before = net(x).clone()
        reduce_before = [b.se.reduce.weight.clone() for b in blocks]
    net.sort_channels()
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-5)  # the largest subnet is unchanged
    for b, old in zip(blocks, reduce_before):
        importance = b.se.expand.weight.abs().sum(dim=(0, 2, 3))  # per hidden unit, as OFA ranks them
        assert torch.all(importance[:-1] >= importance[1:])
        assert not torch.equal(b.se.reduce.weight.sum(dim=(1, 2, 3)), old.sum(dim=(1, 2, 3)))  # rows moved


def test_phases_make_dimensions_elastic_cumulatively():
    space = tiny_space()
    assert phase_kinds("full") == frozenset()
    assert phase_kinds("depth") == {"kernel", "depth"}
    rng = random.Random(0)
    kernel_only = [sample_subnet(space, rng, phase_kinds("kernel")) for _ in range(20)]
    assert {g["width_mult"] for g in kernel_only} == {1.0}
    assert {g["c.depth"] for g in kernel_only} == {3}
    assert len({g["c.b0.kernel_size"] for g in kernel_only}) > 1
    assert smallest_subnet(space, phase_kinds("depth"))["c.b0.expansion"] == 3  # expansion not yet elastic
    with pytest.raises(SpaceError, match="unknown OFA phase"):
        phase_kinds("width-first")


def test_non_macro_or_non_elastic_spaces_are_refused_with_one_line():
    from nasbench import load_space

    with pytest.raises(SpaceError, match="macro space") as err:
        OFASupernet(load_space("nb201"))
    assert "\n" not in str(err.value)
    choice = MacroSpace("choice", stem=Block("conv_3x3"), stem_width=8,
                        stages=[Stage("a", Block.choice({"mbconv": {}, "resnet_basic": {}}), width=8)])
    with pytest.raises(SpaceError, match="elastic"):
        OFASupernet(choice)
    with pytest.raises(ConfigError, match="ordered subset"):
        OFAConfig(phases=(("kernel", 1), ("full", 1)))


def test_a_one_value_choice_is_a_constant_anywhere_in_an_ofa_space():
    """``stem_width=Choice([16])`` (and one-value se/act/kernel/head choices) are constants, not refused."""
    from nasbench.space import Choice

    block = Block("mbconv", kernel_size=Choice([3, 5]), expansion=Choice([2, 3]), se=Choice([True]),
                  act=Choice(["hswish"]))
    space = MacroSpace("one_value", stem=Block("conv_3x3", act=Choice(["relu"])), stem_width=Choice([16]),
                       stages=[Stage("a", block, width=Choice([8]), depth=Choice([1, 2]), stride=2)],
                       head=Block("conv_1x1"), head_width=Choice([32]))
    net = OFASupernet(space, 10, (1, 8, 8)).eval()
    _randomize(net)
    assert net.stem.conv.out_channels == 16 and net.stages[0][0].se is not None
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rng = random.Random(0)
    for g in [largest_subnet(space), smallest_subnet(space), sample_subnet(space, rng)]:
        assert g["stem.width"] == 16
        model = net.extract(g).eval()
        net.set_active(g)
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x), rtol=1e-5, atol=1e-5)
    # two values are still a choice the supernet cannot make elastic
    with pytest.raises(SpaceError, match="stem.width"):
        OFASupernet(MacroSpace("two", stem_width=Choice([8, 16]), stages=[Stage("a", block, width=8)]))
    with pytest.raises(SpaceError, match="a.b0.se"):
        OFASupernet(MacroSpace("se", stages=[Stage("a", Block("mbconv", se=Choice([True, False])), width=8)]))


def test_recalibrated_bn_statistics_match_the_data(data):
    space = tiny_space()
    net = OFASupernet(space, 10, data.input_shape)
    _randomize(net)
    model = net.extract(smallest_subnet(space))
    from nasbench.ofa import calibration_batches

    batches = calibration_batches(data, n_images=128, batch_size=32)
    recalibrate_bn(model, batches)
    assert not model.training
    x = torch.cat([b[0] for b in batches])
    stem_out = model.stem.conv(x)
    torch.testing.assert_close(model.stem.bn.running_mean, stem_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)


def test_every_subnet_sampled_under_a_latency_budget_meets_it_by_the_predictor():
    from nasbench.hardware import LatencyPredictor, profile_space
    from nasbench.runner import Constraints

    space = tiny_space()
    predictor = LatencyPredictor(profile_space(space, input_shape=(1, 8, 8), networks=4, warmup=1, repeats=3), space)
    rng = random.Random(5)
    free = [predictor.predict(sample_subnet(space, rng)) for _ in range(40)]
    budget = sorted(free)[len(free) // 3]
    assert max(free) > budget  # the budget really excludes some subnets
    picked = sample_constrained(space, 8, seed=1, constraints=Constraints(max_latency_ms=budget),
                                estimate=lambda g: {"latency_ms": predictor.predict(g)})
    assert len({g.hash for g in picked}) == 8
    assert all(predictor.predict(g) <= budget for g in picked)
    with pytest.raises(ConfigError, match="loosen"):
        sample_constrained(space, 3, seed=1, constraints=Constraints(max_latency_ms=min(free) / 100),
                           estimate=lambda g: {"latency_ms": predictor.predict(g)}, max_draws=50)


SCHEDULE = OFAConfig(phases=(("full", 1), ("kernel", 1), ("expansion", 1)), batch_size=64, random_subnets=1)


def test_training_runs_every_phase_and_resume_continues_the_shrinking_phase(data, tmp_path):
    space = tiny_space()
    straight = OFATrainer(space, data, SCHEDULE, seed=3)
    straight.run()
    assert [h.phase for h in straight.history] == ["full", "kernel", "expansion"] and straight.done

    first = OFATrainer(space, data, SCHEDULE, seed=3)
    first.train_epoch()
    first.train_epoch()
    first.save(tmp_path / "ofa.pt")
    resumed = OFATrainer(space, data, SCHEDULE, seed=3)
    assert resumed.load(tmp_path / "ofa.pt")
    assert (resumed.epoch, resumed.phase) == (2, "expansion")
    resumed.run()
    assert [h.phase for h in resumed.history] == ["full", "kernel", "expansion"]
    for (k, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(ConfigError, match="schedule"):
        OFATrainer(space, data, OFAConfig(phases=(("full", 2),)), seed=3).load(tmp_path / "ofa.pt")


def test_cli_ofa_search_trains_evolves_exports_with_weights_and_resumes(data, tmp_path, monkeypatch, capsys):
    import nasbench
    from nasbench.runner import open_study as load_study

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text(TINY_SPACE_SOURCE)
    common = ["search", "--strategy", "ofa", "--space", "tiny.py", "--ofa-phases", "full:1,kernel:1,depth:1",
              "--limit", "256", "--population", "4", "--tournament", "2", "--objective", "accuracy,params",
              "--storage", "sqlite:///s.db", "--study", "o"]
    code, out, err = run_main([*common, "--budget", "6"], capsys)
    assert code == 0, out + err
    study = load_study("sqlite:///s.db", "o")
    trials = study.get_trials()
    assert len(trials) == 6 and {t.user_attrs["strategy"] for t in trials} == {"ofa"}
    assert all(t.user_attrs["accuracy_source"].startswith("inherited") for t in trials)
    arch = nasbench.load_architecture("best.json")
    assert arch.weights_path is not None and "test_accuracy" in arch.metrics
    # the exported weights are the written supernet's subnet, BN-recalibrated as the command does
    space = tiny_space()
    trainer = OFATrainer(space, data, OFAConfig(phases=(("full", 1), ("kernel", 1), ("depth", 1))), seed=0)
    assert trainer.load(tmp_path / ".nasbench" / "o.ofa.pt") and trainer.done
    expected = recalibrate_bn(trainer.net.extract(space.load_genome(arch.genome.to_dict())), trainer.calibration)
    exported, fresh = arch.build().state_dict(), arch.build(load_weights=False).state_dict()
    assert exported.keys() == expected.state_dict().keys()
    for k, v in expected.state_dict().items():
        torch.testing.assert_close(exported[k], v, msg=k)
    assert not torch.equal(exported["stem.conv.weight"], fresh["stem.conv.weight"])  # not a fresh init
    assert not torch.equal(exported["stem.bn.running_var"], fresh["stem.bn.running_var"])  # recalibrated
    points = sorted((tmp_path / "best_pareto").glob("point_*.json"))
    assert points and all(json.loads(p.read_text())["weights"] for p in points)
    stamp = (tmp_path / ".nasbench" / "o.ofa.pt").stat().st_mtime_ns
    # schedule flags contradicting the stored supernet are refused before anything runs; equal ones are fine
    for extra, stored in ((["--ofa-phases", "full:2"], "--ofa-phases full:1,kernel:1,depth:1"),
                          (["--sandwich", "1", "--lr", "0.1"], "--sandwich 2 --lr 0.05"),
                          (["--batch-size", "32"], "--batch-size 64")):
        code, out, err = run_main([*common, "--budget", "8", *extra], capsys)
        assert code == 2 and f"was trained with {stored};" in err and len(err.strip().splitlines()) == 1, err
        assert "--supernet" in err
    state = torch.load(tmp_path / ".nasbench" / "o.ofa.pt", weights_only=True)
    state["config"]["batch_size"] = 32
    torch.save(state, tmp_path / "b32.pt")  # a supernet trained at 32: an explicit --batch-size 64 (the default) clashes
    code, out, err = run_main([*common, "--budget", "8", "--supernet", "b32.pt", "--batch-size", "64"], capsys)
    assert code == 2 and "was trained with --batch-size 32;" in err, err
    assert len(load_study("sqlite:///s.db", "o").get_trials()) == 6
    code, out, err = run_main([*common, "--budget", "8", "--sandwich", "2", "--lr", "0.05", "--batch-size", "64"],
                              capsys)  # resumes: supernet loaded, two more subnets
    assert code == 0, out + err
    assert len(load_study("sqlite:///s.db", "o").get_trials()) == 8
    assert (tmp_path / ".nasbench" / "o.ofa.pt").stat().st_mtime_ns == stamp
    code, out, err = run_main(["search", "--strategy", "ofa", "--space", "nb201", "--storage", "sqlite:///s.db",
                               "--study", "other"], capsys)
    assert code == 2 and "macro space" in err and len(err.strip().splitlines()) == 1
    import optuna

    assert "other" not in optuna.get_all_study_names("sqlite:///s.db")  # refused before the study was made
    code, out, err = run_main([*common, "--epochs", "3"], capsys)
    assert code == 2 and "--ofa-phases" in err


@pytest.mark.slow
def test_cli_ofa_supernet_trains_in_a_ray_actor_like_in_process(tmp_path, monkeypatch, capsys):
    from nasbench.data import load_dataset

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text(TINY_SPACE_SOURCE)
    code, out, err = run_main(["search", "--strategy", "ofa", "--space", "tiny.py", "--ofa-phases", "full:1,kernel:1",
                               "--limit", "256", "--budget", "3", "--population", "3", "--tournament", "2",
                               "--executor", "ray", "--cpus-per-trial", "1", "--storage", "sqlite:///s.db",
                               "--study", "r"], capsys)
    assert code == 0, out + err
    assert "on Ray" in out
    local = OFATrainer(tiny_space(), load_dataset("digits", seed=0, limit=256),
                       OFAConfig(phases=(("full", 1), ("kernel", 1))), seed=0)
    local.run()
    remote = OFATrainer(tiny_space(), local.data, local.config, seed=0)
    assert remote.load(tmp_path / ".nasbench" / "r.ofa.pt") and remote.done
    for (k, a), b in zip(local.net.state_dict().items(), remote.net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert nasbench_trials(tmp_path / "s.db", "r") == 3


def nasbench_trials(db, study: str) -> int:  # noqa: ANN001
    """Complete trials in a study file."""
    from nasbench.runner import open_study

    return sum(t.state.name == "COMPLETE" for t in open_study(f"sqlite:///{db}", study).get_trials())


def test_channels_are_sorted_even_without_an_expansion_phase_and_other_data_is_refused(data, tmp_path):
    from nasbench.data import load_dataset

    space = tiny_space()
    trainer = OFATrainer(space, data, OFAConfig(phases=(("full", 1), ("width", 1)), random_subnets=0), seed=0)
    trainer.train_epoch()
    calls = []
    original = trainer.net.sort_channels
    trainer.net.sort_channels = lambda: (calls.append(1), original())
    trainer.train_epoch()  # the width phase also makes expansion elastic: sort first
    assert calls == [1]
    trainer.save(tmp_path / "ofa.pt")
    other = load_dataset("digits", seed=1, limit=256)  # same shape, other splits
    with pytest.raises(ConfigError, match="other data"):
        OFATrainer(space, other, trainer.config, seed=0).load(tmp_path / "ofa.pt")


def test_cli_ofa_latency_without_a_profile_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["search", "--strategy", "ofa", "--max-latency-ms", "3", "--storage",
                               "sqlite:///s.db"], capsys)
    assert code == 2 and "--latency-profile" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists()


def test_cli_ofa_help_shows_the_real_schedule_defaults(capsys):
    code, out, err = run_main(["search", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0
    assert "(default full:2,kernel:1,depth:1,expansion:1,width:1)" in text
    assert "smallest (default 2)" in text


def test_ofa_job_carries_the_space_not_the_file_path(tmp_path):
    import pickle

    from nasbench.ofa import OFAJob

    path = tmp_path / "tiny.py"
    path.write_text(TINY_SPACE_SOURCE)
    job = OFAJob(str(path), "digits", SCHEDULE, limit=64, device="cpu")
    assert isinstance(job.space, MacroSpace) and job.space.hash == tiny_space().hash
    blob = pickle.dumps(job)
    path.unlink()  # a remote worker does not have the file
    trainer = pickle.loads(blob)()
    assert trainer.space.hash == tiny_space().hash and trainer.config == SCHEDULE
    assert OFAJob("mobilenetv3", "digits", SCHEDULE).space == "mobilenetv3"  # built-ins load where the job runs
