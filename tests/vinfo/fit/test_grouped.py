"""vinfo.fit.grouped: grouped layers equal their members side by side, and a MemberStack's
losses, gradients, parameters and Adam state equal those of its members trained one by one.

(Whole families' Z pathways grouped, and batched fitting against sequential fitting, are in
tests/vinfo/fit/test_batched.py.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from vinfo.fit.grouped import GroupedPointwise, MemberStack, group_modules, stacked_target
from vinfo.fit.loop import new_probe
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import PatchDecoder, parse_family
from vinfo.probes.probe import ProbeData
from vinfo.probes.targets import make_target

SETTINGS = FitSettings(synthesis_widths=(8, 8, 8))
LR = 1e-2


def _randomize(modules: list[nn.Module], seed: int = 0) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.normal_(0, 0.4)


def _side_by_side(modules: list[nn.Module], inputs: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([m(x) for m, x in zip(modules, inputs)], 1)


def _grouped_out(grouped: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return grouped(torch.cat(inputs, 1))


# --- group_modules / GroupedPointwise --------------------------------------------------


def test_linear_layers_become_one_batched_matmul():
    layers = [nn.Linear(4, 5) for _ in range(3)]
    _randomize(layers)
    grouped = group_modules(layers)
    assert type(grouped) is GroupedPointwise and grouped.k == 3 and grouped.shuffle == 1
    assert grouped.weight.shape == (15, 4) and grouped.bias.shape == (15,)
    x = [torch.randn(6, 4) for _ in layers]
    out = _grouped_out(grouped, x)
    assert out.shape == (6, 15)
    torch.testing.assert_close(out, _side_by_side(layers, x), atol=1e-6, rtol=1e-6)
    # the members' parameters are copied, not shared
    assert all(grouped.weight.data_ptr() != m.weight.data_ptr() for m in layers)


def test_1x1_convolutions_become_one_batched_matmul_with_an_optional_pixel_shuffle():
    k, c_in, c, s = 2, 3, 3, 2
    convs = [nn.Conv2d(c_in, c * s * s, 1) for _ in range(k)]
    _randomize(convs, seed=1)
    grouped = group_modules(convs)
    assert type(grouped) is GroupedPointwise
    x = [torch.randn(5, c_in, 2, 3) for _ in convs]
    torch.testing.assert_close(_grouped_out(grouped, x), _side_by_side(convs, x),
                               atol=1e-6, rtol=1e-6)
    # shuffle s: PixelShuffle(s) folded into the output copy, per member
    grouped.shuffle = s
    shuffled = [nn.Sequential(conv, nn.PixelShuffle(s)) for conv in convs]
    out = _grouped_out(grouped, x)
    assert out.shape == (5, k * c, 2 * s, 3 * s)
    torch.testing.assert_close(out, _side_by_side(shuffled, x), atol=1e-6, rtol=1e-6)


def test_patch_decoders_fold_their_pixel_shuffle_into_the_grouped_head():
    decoders = [PatchDecoder(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()), 4, 2, 4)
                for _ in range(3)]
    _randomize(decoders, seed=2)
    grouped = group_modules(decoders)
    assert type(grouped) is PatchDecoder
    assert isinstance(grouped.head, GroupedPointwise) and grouped.head.shuffle == 4
    assert isinstance(grouped.shuffle, nn.Identity)  # shuffled once, in the head's copy
    assert all(isinstance(d.shuffle, nn.PixelShuffle) for d in decoders)  # members untouched
    x = [torch.randn(2, 3, 2, 3) for _ in decoders]
    torch.testing.assert_close(_grouped_out(grouped, x), _side_by_side(decoders, x),
                               atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(2, 3, 3, padding=1),
    lambda: nn.Conv2d(2, 3, 1, padding=1),  # 1x1 but padded: not pointwise
    lambda: nn.Conv2d(2, 3, 1, stride=2),  # 1x1 but strided
    lambda: nn.Conv2d(2, 3, 1, bias=False),  # 1x1 without a bias
    lambda: nn.Conv2d(2, 3, 3, padding=1, bias=False),
    lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
    lambda: nn.Conv2d(2, 3, 3, padding=2, dilation=2, padding_mode="reflect"),
    lambda: nn.ConvTranspose2d(2, 3, 5, stride=2, padding=2, output_padding=1),
], ids=["3x3", "1x1-padded", "1x1-strided", "1x1-no-bias", "3x3-no-bias", "groups-2",
        "dilated-reflect", "transposed"])
def test_other_convolutions_become_one_grouped_convolution(make):
    layers = [make() for _ in range(3)]
    _randomize(layers, seed=3)
    first = layers[0]
    grouped = group_modules(layers)
    assert type(grouped) is type(first)
    assert grouped.groups == 3 * first.groups
    assert (grouped.in_channels, grouped.out_channels) == (3 * first.in_channels,
                                                           3 * first.out_channels)
    assert (grouped.bias is None) == (first.bias is None)
    for attr in ("kernel_size", "stride", "padding", "dilation", "padding_mode",
                 "output_padding"):
        assert getattr(grouped, attr) == getattr(first, attr)
    x = [torch.randn(2, first.in_channels, 5, 6) for _ in layers]
    out = _grouped_out(grouped, x)
    expected = _side_by_side(layers, x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.ELU(alpha=0.3), nn.Identity(),
                                   nn.PixelShuffle(2)], ids=lambda m: type(m).__name__)
def test_per_channel_layers_are_copied(layer):
    grouped = group_modules([layer, copy.deepcopy(layer)])
    assert type(grouped) is type(layer) and grouped is not layer
    assert repr(grouped) == repr(layer)  # same settings (alpha, upscale factor)
    x = [torch.randn(2, 8, 3, 3), torch.randn(2, 8, 3, 3)]
    torch.testing.assert_close(_grouped_out(grouped, x), _side_by_side([layer, layer], x))


def test_layers_it_cannot_group_raise_type_error_naming_them():
    with pytest.raises(TypeError, match="layer type Linear cannot be grouped"):
        group_modules([nn.Linear(3, 2, bias=False)] * 2)  # a linear layer needs its bias

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("gain", torch.ones(1))

    with pytest.raises(TypeError, match="Scaled has buffers"):
        group_modules([Scaled(), Scaled()])
    own = nn.Sequential(nn.ReLU())
    own.register_parameter("gain", nn.Parameter(torch.ones(1)))  # a container's own weight
    with pytest.raises(TypeError, match="layer type Sequential cannot be grouped"):
        group_modules([own, copy.deepcopy(own)])
    nested = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Sigmoid()))
    with pytest.raises(TypeError, match="layer type Sigmoid cannot be grouped"):
        group_modules([nested, copy.deepcopy(nested)])
    with pytest.raises(TypeError, match="layer type ModuleList cannot be grouped"):
        group_modules([nn.ModuleList([nn.ReLU()])] * 2)


# --- stacked_target ---------------------------------------------------------------------


def test_stacked_target_repeats_the_constants_and_scores_members_side_by_side():
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.normal([1.0, -3.0], [0.5, 2.0], size=(40, 2)).astype(np.float32))
    mask = torch.ones_like(y, dtype=torch.bool)
    target = make_target("gaussian", y, mask)
    stacked = stacked_target(target, 3, 2)
    assert stacked.kind == "gaussian" and stacked.channels == 6
    assert torch.equal(stacked.loc, target.loc.repeat(3))
    assert torch.equal(stacked.spread, target.spread.repeat(3))
    # restacking a stack (what MemberStack.keep does) takes one member's constants
    restacked = stacked_target(stacked, 2, 2)
    assert restacked.channels == 4 and torch.equal(restacked.loc, target.loc.repeat(2))
    # the stacked target's statistic on the members' outputs side by side is theirs
    outs = [torch.randn(40, 2) for _ in range(3)]
    apart = torch.cat([target.stat(o, y, mask) for o in outs], 1)
    together = stacked.stat(torch.cat(outs, 1), y.repeat(1, 3), mask.repeat(1, 3))
    torch.testing.assert_close(together, apart)
    assert target.channels == 2 and target.loc.shape == (2,)  # the original is unchanged


# --- MemberStack -----------------------------------------------------------------------


def _dense_data(n: int = 10) -> ProbeData:
    """z [n, 3, 2, 3]; y gaussian [n, 2, 4, 6] (stride 2) with a few masked values."""
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.normal(size=(n, 3, 2, 3)).astype(np.float32))
    y = torch.from_numpy(rng.normal(size=(n, 2, 4, 6)).astype(np.float32))
    y[:, 0] += torch.repeat_interleave(torch.repeat_interleave(z[:, :1, :, :], 2, 2), 2, 3)[:, 0]
    mask = torch.from_numpy(rng.random(size=y.shape) > 0.1)
    return ProbeData(z, y, mask, 2)


def _probes(data: ProbeData, null: bool, k: int = 3, family: str = "cnn-1x4"):
    target = make_target("gaussian", data.y, data.mask)
    fit = np.arange(data.z.shape[0])
    probes = [new_probe(parse_family(family), target, data, fit, SETTINGS, seed, null)[0]
              for seed in range(k)]
    torch.manual_seed(5)
    with torch.no_grad():  # every member different: random pathways, cores and scales
        for probe in probes:
            for p in probe.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return target, probes


# member rows [K, b]: member 1 has one row fewer (padded with its first row, masked out)
ROWS = torch.tensor([[0, 3, 5, 7, 9], [1, 2, 4, 6, 1], [9, 8, 0, 2, 4]])
PAD = torch.tensor([[True] * 5, [True] * 4 + [False], [True] * 5])


def _member_loss(probe, target, data: ProbeData, rows: torch.Tensor) -> torch.Tensor:
    """The member's training NLL (fit_probe's train_step) on its valid rows."""
    y, mask = data.y[rows], data.mask[rows]
    return target.train_nll(probe.stat(data.z[rows], y, mask), mask, probe.log_scale)


def _reference_step(probes, target, data, rows, pad, optimizers=None) -> list[float]:
    losses = []
    for i, probe in enumerate(probes):
        probe.zero_grad(set_to_none=True)
        loss = _member_loss(probe, target, data, rows[i][pad[i]])
        loss.backward()
        if optimizers is not None:
            optimizers[i].step()
        losses.append(float(loss.detach()))
    return losses


def test_inputs_put_the_members_rows_side_by_side_and_mask_the_padding():
    data = _dense_data()
    target, probes = _probes(data, null=False)
    stack = MemberStack([0, 1, 2], probes, target, LR, tuple(data.z.shape[1:]))
    z, y, mask = stack.inputs(ROWS, PAD, data)
    assert z.shape == (5, 9, 2, 3) and y.shape == mask.shape == (5, 6, 4, 6)
    for m in range(3):
        torch.testing.assert_close(z[:, 3 * m:3 * m + 3], data.z[ROWS[m]], rtol=0, atol=0)
        assert torch.equal(y[:, 2 * m:2 * m + 2], data.y[ROWS[m]])
        expected = data.mask[ROWS[m]] & PAD[m].reshape(-1, 1, 1, 1)
        assert torch.equal(mask[:, 2 * m:2 * m + 2], expected)
    assert not mask[4, 2:4].any()  # member 1's padding row counts nowhere
    nulls = MemberStack([0, 1, 2], _probes(data, null=True)[1], target, LR,
                        tuple(data.z.shape[1:]))
    assert nulls.inputs(ROWS, PAD, data)[0] is None  # a stack of nulls reads no z


@pytest.mark.parametrize("null", [False, True], ids=["conditionals", "nulls"])
def test_forward_losses_and_gradients_equal_the_members_one_by_one(null):
    data = _dense_data()
    target, probes = _probes(data, null=null)
    stack = MemberStack([0, 1, 2], probes, target, LR, tuple(data.z.shape[1:]))
    z, y, mask = stack.inputs(ROWS, PAD, data)
    with torch.no_grad():
        out = stack.forward(z, 5)
        apart = torch.cat([p(data.z[ROWS[m]]) for m, p in enumerate(probes)], 1)
    assert out.shape == (5, 6, 4, 6)
    torch.testing.assert_close(out, apart, atol=1e-5, rtol=1e-5)
    if null:
        assert out.stride(0) == 0  # the one output map, broadcast to the rows

    expected = _reference_step(probes, target, data, ROWS, PAD)
    grads = {}
    for chunk in (2, 5):  # row chunks accumulate to the same losses and gradients
        for p in stack.parameters().values():
            p.grad = None
        losses = stack.losses(z, y, mask, chunk)
        assert losses.dtype == torch.float64 and losses.shape == (3,)
        np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-5)
        grads[chunk] = {n: p.grad.clone() for n, p in stack.parameters().items()}
    for name, grad in grads[5].items():
        torch.testing.assert_close(grads[2][name], grad, atol=1e-6, rtol=1e-5)
    names = {n for n, _ in probes[0].named_parameters()}
    assert set(grads[5]) == names  # the members' parameter names
    for m, probe in enumerate(probes):
        for name, p in probe.named_parameters():
            torch.testing.assert_close(grads[5][name].reshape(3, -1)[m], p.grad.flatten(),
                                       atol=1e-6, rtol=1e-4)


def test_member_state_holds_each_members_parameters():
    data = _dense_data()
    target, probes = _probes(data, null=False)
    stack = MemberStack([0, 1, 2], probes, target, LR, tuple(data.z.shape[1:]))
    state = stack.member_state([2, 0])
    assert set(state) == {n for n, _ in probes[0].named_parameters()}
    for name, values in state.items():
        assert values.shape[0] == 2
        for i, m in enumerate([2, 0]):
            assert torch.equal(values[i], dict(probes[m].named_parameters())[name].flatten())
    state["core.bias"].add_(1.0)  # a copy: the stack is unchanged
    assert torch.equal(stack.member_state([2])["core.bias"][0], probes[2].core.bias)


def test_keep_slices_parameters_and_adam_state_like_independent_adams():
    data = _dense_data()
    target, probes = _probes(data, null=False)
    reference = [copy.deepcopy(p) for p in probes]
    optimizers = [torch.optim.Adam(p.parameters(), lr=LR) for p in reference]
    stack = MemberStack([10, 11, 12], probes, target, LR, tuple(data.z.shape[1:]))

    def stack_step(rows, pad) -> torch.Tensor:
        stack.optimizer.zero_grad(set_to_none=True)
        losses = stack.losses(*stack.inputs(rows, pad, data), chunk=5)
        stack.optimizer.step()
        return losses

    def assert_members_equal(rows_of_reference: list[int]) -> None:
        state = stack.member_state(list(range(len(rows_of_reference))))
        for i, m in enumerate(rows_of_reference):
            for name, p in reference[m].named_parameters():
                torch.testing.assert_close(state[name][i], p.detach().flatten(),
                                           atol=2e-6, rtol=1e-5)

    for _ in range(2):
        np.testing.assert_allclose(stack_step(ROWS, PAD).numpy(),
                                   _reference_step(reference, target, data, ROWS, PAD, optimizers),
                                   rtol=1e-5)
    assert_members_equal([0, 1, 2])
    stack.cache = ("stale",)
    stack.keep([2, 0])  # drop member 11, reorder the rest
    assert stack.members == [12, 10] and stack.cache is None
    assert stack.target.channels == 2 * target.channels
    assert stack.bias.shape[0] == 2 * probes[0].core.bias.shape[0]
    assert_members_equal([2, 0])
    # the next steps continue each kept member's own Adam (moments and step count)
    kept = [reference[2], reference[0]]
    kept_opt = [optimizers[2], optimizers[0]]
    for _ in range(2):
        np.testing.assert_allclose(stack_step(ROWS[[2, 0]], PAD[[2, 0]]).numpy(),
                                   _reference_step(kept, target, data, ROWS[[2, 0]],
                                                   PAD[[2, 0]], kept_opt),
                                   rtol=1e-5)
    assert_members_equal([2, 0])
    assert all(float(s["step"]) == 4 for s in stack.optimizer.state.values())


def test_a_stack_holds_nulls_only_or_conditionals_only():
    data = _dense_data()
    target, conditionals = _probes(data, null=False, k=1)
    _, nulls = _probes(data, null=True, k=1)
    with pytest.raises(ValueError, match="nulls only or conditionals only"):
        MemberStack([0, 1], [nulls[0], conditionals[0]], target, LR, tuple(data.z.shape[1:]))
