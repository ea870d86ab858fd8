"""The hidden-size-1 GRU fast path must match torch.nn.GRU exactly, values and gradients."""

from __future__ import annotations

import resource
import sys

import pytest
import torch
from torch import nn

from fspnet.nets._gru import _TORCH_SIGMOID_MIN, _reverse_linear_scan, scalar_gru
from fspnet.nets._layers import Recurrent


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("input_size", [1, 3])
def test_fast_path_matches_torch_gru(bidirectional, num_layers, input_size):
    torch.manual_seed(1)
    gru = nn.GRU(input_size, 1, num_layers, batch_first=True, bidirectional=bidirectional).double()
    with torch.no_grad():  # weights beyond the default init range exercise saturation
        for p in gru.parameters():
            p.mul_(3)
    x = torch.randn(4, 11, input_size, dtype=torch.float64, requires_grad=True)
    expected = gru(x)[0]
    grad_out = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, [x, *gru.parameters()], grad_out)
    got = scalar_gru(gru, x)
    got_grads = torch.autograd.grad(got, [x, *gru.parameters()], grad_out)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch", [3, 200])
def test_short_and_long_rows_match_torch_gru(batch):
    # 200 spectra x 2 directions: rows long enough for torch's sigmoid; 3: scipy's expit
    assert (2 * batch >= _TORCH_SIGMOID_MIN) == (batch == 200)
    torch.manual_seed(5)
    gru = nn.GRU(2, 1, 2, batch_first=True, bidirectional=True).double()
    x = torch.randn(batch, 17, 2, dtype=torch.float64, requires_grad=True)
    expected = gru(x)[0]
    grad_out = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, [x, *gru.parameters()], grad_out)
    got = scalar_gru(gru, x)
    got_grads = torch.autograd.grad(got, [x, *gru.parameters()], grad_out)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-11)


def test_backward_leaves_the_incoming_gradient_alone():
    # the adjoint scan runs in place: on a copy, even where the incoming gradient is already
    # laid out as the scan wants it (one spectrum, one direction)
    torch.manual_seed(6)
    gru = nn.GRU(1, 1, 1, batch_first=True).double()
    x = torch.randn(1, 9, 1, dtype=torch.float64, requires_grad=True)
    y = scalar_gru(gru, x)
    grad_out = torch.randn_like(y)
    before = grad_out.clone()
    torch.autograd.grad(y, x, grad_out)
    assert torch.equal(grad_out, before)


def test_fast_path_float32_long_sequence():
    torch.manual_seed(2)
    gru = nn.GRU(1, 1, 2, batch_first=True, bidirectional=True)
    x = torch.randn(6, 240, 1, requires_grad=True)
    expected = gru(x)[0]
    expected.sum().backward()
    expected_grad = x.grad.clone()
    x.grad = None
    got = scalar_gru(gru, x)
    got.sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-4, atol=1e-5)


def test_gradcheck():
    torch.manual_seed(3)
    gru = nn.GRU(2, 1, 1, batch_first=True, bidirectional=True).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: scalar_gru(gru, inp), (x,))


@pytest.mark.parametrize("steps", [1, 2, 3, 8, 13])
def test_reverse_linear_scan(steps):
    coeff = torch.randn(steps - 1, 2, dtype=torch.float64)
    value = torch.randn(steps, 2, dtype=torch.float64)
    expected = torch.zeros_like(value)
    later = torch.zeros(2, dtype=torch.float64)
    for t in reversed(range(steps)):
        later = value[t] + (coeff[t] * later if t < steps - 1 else 0)
        expected[t] = later
    out = _reverse_linear_scan(coeff, value)
    assert out is value  # solved in place
    torch.testing.assert_close(out, expected)


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(4)
    layer = Recurrent(nn.GRU(1, 1, 2, batch_first=True, dropout=0.5, bidirectional=True), "sum")
    x = torch.randn(3, 1, 20)
    layer.eval()
    reference = layer.gru(x.transpose(1, 2))[0].view(3, 20, 2, 1).sum(2).transpose(1, 2)
    torch.testing.assert_close(layer(x), reference)
    layer.train()
    assert not torch.allclose(layer(x), reference)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tuning is Linux-only")
def test_training_does_not_page_fault_its_temporaries_back_in():
    # glibc returned each freed MB-sized temporary to the kernel and faulted it in again on the
    # next batch: ~1,400 minor page faults per forward+backward at batch 512 before the fix
    torch.manual_seed(7)
    gru = nn.GRU(1, 1, 2, batch_first=True, bidirectional=True)
    x = torch.randn(512, 240, 1, requires_grad=True)
    for _ in range(4):  # the first training call tunes malloc; the next ones grow the heap
        scalar_gru(gru, x).sum().backward()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        scalar_gru(gru, x).sum().backward()
    per_pass = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
    assert per_pass < 700, f"{per_pass:.0f} minor page faults per forward+backward"
