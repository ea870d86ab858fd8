"""A fast CPU path for GRUs whose hidden size is 1, the recurrent layer FSP-Net uses.

``torch.nn.GRU`` on a CPU builds an autograd graph of about ten nodes per time step; over
FSP-Net's 240 energy bins, 2 layers and 2 directions that is ~10,000 nodes and ~170 ms of CPU
for one forward+backward pass of a batch of 60. With hidden size 1 every gate is a scalar per
spectrum, so:

* forward: the input projections of all steps are a few multiply-adds over time-major
  [T, D, N] arrays; the sequential part runs both directions together in one loop of in-place
  numpy ufunc calls (no autograd recording, about half of torch's per-call overhead at this
  size), keeping the gates;
* backward: the adjoint of the hidden state obeys a *linear* scalar recurrence
  ``lam[t] = grad[t] + jac[t+1] lam[t+1]``, run as the same kind of numpy loop (two calls per
  step on a [D, N] row that stays in cache); everything else is elementwise work and one
  reduction per gradient over batch and time.

Every array is time-major with the batch last ([T, ..., D, N]), direction 1 in its own
(reversed) time order, and the layers hand each other their hidden states in that layout, so
only the GRU's input and output are transposed: at batch 1024 the einsum/permute copies and a
log-depth parallel scan of an earlier version cost more than the arithmetic (profiled with
``torch.profiler``; forward+backward of FSP-Net's 2-layer bidirectional GRU went from ~130 to
~60 ms of CPU for 1024 spectra, from ~8 to ~7 ms for 60).

The weights stay in a ``torch.nn.GRU``, so state dicts are the standard ones and CUDA (cuDNN),
other dtypes and larger hidden sizes use PyTorch's own implementation. Results match
``torch.nn.GRU`` to rounding (tests compare values and gradients in float64).
"""

from __future__ import annotations

import typing as tp

import numpy as np
import torch
from scipy.special import expit
from torch import Tensor

from fspnet._memory import retain_freed_memory


def _reverse_linear_scan(coeff: Tensor, value: Tensor) -> Tensor:
    """Solve ``y[t] = value[t] + coeff[t] * y[t+1]`` (``y[T] = 0``) along dim 0, in place.

    ``coeff`` has one row fewer than ``value`` (``coeff[t]`` links rows t and t+1); ``value``
    (contiguous, CPU) is overwritten with ``y`` and returned. A sequential loop of two numpy
    calls per row: O(T) work on rows that stay in cache, where a parallel scan does
    O(T log T) work on the whole array.
    """
    y, c = value.numpy(), coeff.numpy()
    tmp = np.empty_like(y[0])
    for t in range(len(c) - 1, -1, -1):
        np.multiply(c[t], y[t + 1], out=tmp)
        np.add(y[t], tmp, out=y[t])
    return value


# rows of at least this many values per gate (D x N) take torch's sigmoid, smaller ones scipy's
_TORCH_SIGMOID_MIN = 256


def _recurrence(gates: Tensor, w_rzm: Tensor, u_all: Tensor) -> None:
    """The sequential part of the GRU, in place: gates [T, 4, D, N] rows (r, z, m, s)
    pre-activations become (r, z, m, s); u_all [T+1, D, N] gets u_t = (h_t + 1) / 2.

    Multiply-adds are numpy ufuncs with ``out=`` (about half of torch's per-call overhead on
    these [D, N]-sized steps). Sigmoids on long rows are torch's, vectorised: 5x faster than
    ``scipy.special.expit`` on a row of a batch of 1024, which wins on short rows (batch 60)
    where per-call overhead dominates. The loop is nothing but such calls.
    """
    g_np, u_np = gates.numpy(), u_all.numpy()
    tmp = np.empty_like(u_np[0])
    tmp3 = np.empty_like(g_np[0, :3])
    w = w_rzm.numpy()
    mul, add, sub = np.multiply, np.add, np.subtract
    rz_rows: tp.Any
    s_rows: tp.Any
    if u_np[0].size >= _TORCH_SIGMOID_MIN:
        sigmoid: tp.Callable[..., tp.Any] = torch.sigmoid
        rz_rows, s_rows = gates[:, :2].unbind(0), gates[:, 3].unbind(0)  # views made once
    else:
        sigmoid, rz_rows, s_rows = expit, g_np[:, :2], g_np[:, 3]
    u = u_np[0]
    views = [(g[:3], g[0], g[1], g[2], g[3], rz_t, s_t, u_next) for g, rz_t, s_t, u_next in zip(g_np, rz_rows, s_rows, u_np[1:])]
    for rzm, r, z, m, s, rz_t, s_t, u_next in views:
        mul(w, u, out=tmp3)
        add(rzm, tmp3, out=rzm)
        sigmoid(rz_t, out=rz_t)
        mul(r, m, out=tmp)
        add(s, tmp, out=s)
        sigmoid(s_t, out=s_t)
        sub(u, s, out=tmp)
        mul(z, tmp, out=tmp)
        u = add(s, tmp, out=u_next)  # u' = s + z (u - s)


def _time_major(x: Tensor, n_dir: int) -> Tensor:
    """[N, T, K] batch-first -> [T, K, D, N], direction 1 in its own (reversed) time order."""
    xt = x.permute(1, 2, 0)  # [T, K, N]
    return torch.stack([xt, xt.flip(0)] if n_dir == 2 else [xt], dim=2)


def _next_input(hidden: Tensor, n_dir: int) -> Tensor:
    """Hidden states [T, D', N] of one layer (each direction in its own time order) -> the next
    layer's input [T, D', D, N]: copies of contiguous [N] rows, no transposes."""
    seqs = [hidden[:, 0], hidden[:, 1].flip(0)] if hidden.shape[1] == 2 else [hidden[:, 0]]  # time order
    return torch.stack([torch.stack([h, h.flip(0)] if n_dir == 2 else [h], dim=1) for h in seqs], dim=1)


def _batch_first(hidden: Tensor) -> Tensor:
    """Hidden states [T, D, N] (each direction in its own time order) -> the output [N, T, D]."""
    seqs = [hidden[:, 0], hidden[:, 1].flip(0)] if hidden.shape[1] == 2 else [hidden[:, 0]]
    return torch.stack([h.T for h in seqs], dim=-1)


def _project(xs: Tensor, w: Tensor, bias: Tensor, out: Tensor) -> None:
    """``out[t, d, n] = bias[d] + sum_i w[d, i] xs[t, i, d, n]``: the input projection of one gate."""
    torch.addcmul(bias[:, None], xs[:, 0], w[:, 0, None], out=out)
    for i in range(1, xs.shape[1]):
        out.addcmul_(xs[:, i], w[:, i, None])


class _ScalarGRULayer(torch.autograd.Function):
    """One GRU layer, hidden size 1, one or two directions, time-major input and output."""

    @staticmethod
    def forward(
        ctx: tp.Any,
        xs: Tensor,
        w_ih: Tensor,
        b_ih: Tensor,
        w_hh: Tensor,
        b_hh: Tensor,
    ) -> Tensor:
        # xs [T, I, D, N] (direction 1 time-reversed); w_ih [D, 3, I]; b_ih, w_hh, b_hh [D, 3];
        # gates ordered (r, z, n) as nn.GRU. Returns h_1..h_T [T, D, N] in the same time orders.
        n_dir = w_ih.shape[0]
        steps, batch = xs.shape[0], xs.shape[-1]
        # The loop runs on u = (h + 1) / 2 so that every step is sigmoids and a lerp:
        #   rz = sigmoid(a_rz + b_rz + W_rz h)   = sigmoid(a_rz + (b_rz - W_rz) + 2 W_rz u)
        #   n  = tanh(a_n + r (W_n h + b_n))     = 2 s - 1,  s = sigmoid(2 a_n + r m),
        #   m  = 2 (W_n h + b_n)                 = 4 W_n u + 2 (b_n - W_n)
        #   h' = n + z (h - n)                  <=>  u' = s + z (u - s)
        # Rows of `gates` per step: r, z, m, s pre-activations,
        # so one multiply-add updates r, z and m together.
        w_r, w_z, w_n = w_hh.unbind(1)  # each [D]
        b_n = b_hh[:, 2]
        gates = xs.new_empty(steps, 4, n_dir, batch)  # [T, 4, D, N]
        bias_rz = b_ih[:, :2] + b_hh[:, :2] - w_hh[:, :2]  # [D, 2]
        for g in range(2):
            _project(xs, w_ih[:, g], bias_rz[:, g], gates[:, g])
        gates[:, 2] = (2 * (b_n - w_n))[:, None]
        _project(xs, 2 * w_ih[:, 2], 2 * b_ih[:, 2], gates[:, 3])
        w_rzm = torch.stack([2 * w_r, 2 * w_z, 4 * w_n])[..., None]  # [3, D, 1]
        u_all = xs.new_empty(steps + 1, n_dir, batch)  # [T+1, D, N]; the loop fills rows 1..T
        u_all[0] = 0.5  # h_0 = 0
        _recurrence(gates, w_rzm, u_all)
        hidden = u_all.mul_(2).sub_(1)  # [T+1, D, N]
        gates[:, 3].mul_(2).sub_(1)  # s -> n; rows are now r, z, m = 2 (W_hn h + b_hn), n
        ctx.save_for_backward(xs, w_ih, w_hh, gates, hidden)
        return hidden[1:]

    @staticmethod
    def backward(ctx: tp.Any, grad_hidden: Tensor) -> tuple[Tensor | None, ...]:
        xs, w_ih, w_hh, gates, hidden = ctx.saved_tensors
        # everything below is [T, D, N] in each direction's own time order
        lam = grad_hidden.clone(memory_format=torch.contiguous_format)  # the scan overwrites it
        r, z, m, n = gates.unbind(1)
        h_prev = hidden[:-1]
        w_r, w_z, w_n = (w[:, None] for w in w_hh.unbind(1))  # each [D, 1]
        ghn = m * 0.5  # W_hn h + b_hn
        # d h_t / d pre-activation of each gate, per unit upstream gradient
        one_z = 1 - z
        e_n = (1 - n * n).mul_(one_z)
        e_z = (h_prev - n).mul_(z).mul_(one_z)
        e_r = (1 - r).mul_(r).mul_(ghn).mul_(e_n)
        # d h_t / d h_{t-1}, needed for t >= 1 only
        jac = torch.addcmul(z[1:], e_z[1:], w_z).addcmul_(e_r[1:], w_r)
        jac.addcmul_(e_n[1:] * r[1:], w_n)
        _reverse_linear_scan(jac, lam)  # lam[t] = grad[t] + jac[t+1] lam[t+1]
        steps, n_dir, batch = lam.shape
        d_pre = lam.new_empty(steps, 4, n_dir, batch)  # [T, 4, D, N]: d_r, d_z, d_n, d_n r
        torch.mul(lam, e_r, out=d_pre[:, 0])
        torch.mul(lam, e_z, out=d_pre[:, 1])
        torch.mul(lam, e_n, out=d_pre[:, 2])
        torch.mul(d_pre[:, 2], r, out=d_pre[:, 3])  # the n gate's hidden part enters through r
        # Weight gradients are sums over time and batch of products: per step, one small matmul
        # of the [4D, N] gate rows with the [K, N] input (or h) rows, summed over steps, reads
        # each array once where elementwise products and sums made [T, ...] temporaries (at
        # batch 1024: ~10 % of the GRU's forward+backward). The matmul also pairs directions
        # d != d'; only the diagonal d == d' is kept.
        rows = d_pre.view(steps, 4 * n_dir, batch)
        n_in = xs.shape[1]
        g_x = torch.bmm(rows, xs.view(steps, n_in * n_dir, batch).transpose(1, 2)).sum(0)  # [4D, I D]
        g_x = g_x.view(4, n_dir, n_in, n_dir).diagonal(dim1=1, dim2=3)  # [4, I, D]
        g_h = torch.bmm(rows, h_prev.transpose(1, 2)).sum(0).view(4, n_dir, n_dir).diagonal(dim1=1, dim2=2)  # [4, D]
        g_b = d_pre.sum(dim=(0, 3))  # [4, D]
        grad_w_ih = g_x[:3].permute(2, 0, 1)  # [D, 3, I]
        grad_b_ih = g_b[:3].T  # [D, 3]
        grad_b_hh = g_b[[0, 1, 3]].T
        grad_w_hh = g_h[[0, 1, 3]].T
        grad_xs = None
        if ctx.needs_input_grad[0]:
            grad_xs = torch.empty_like(xs)  # [T, I, D, N]
            for i in range(xs.shape[1]):
                dx = torch.mul(d_pre[:, 0], w_ih[:, 0, i, None], out=grad_xs[:, i])
                dx.addcmul_(d_pre[:, 1], w_ih[:, 1, i, None]).addcmul_(d_pre[:, 2], w_ih[:, 2, i, None])
        return grad_xs, grad_w_ih, grad_b_ih, grad_w_hh, grad_b_hh


def scalar_gru(gru: torch.nn.GRU, x: Tensor) -> Tensor:
    """Run ``gru`` (hidden size 1, batch first, biases on) on CPU ``x`` [N, T, I], float32/64.

    Matches ``gru(x)[0]`` including inter-layer dropout in training mode; returns [N, T, D].
    """
    if torch.is_grad_enabled():
        retain_freed_memory()  # training allocates and frees ~20 MB of temporaries a batch
    suffixes = ["", "_reverse"] if gru.bidirectional else [""]
    n_dir = len(suffixes)
    xs = _time_major(x, n_dir)  # [T, I, D, N]; layers pass time-major states to each other
    for layer in range(gru.num_layers):
        params = [
            torch.stack([getattr(gru, f"{name}_l{layer}{sfx}") for sfx in suffixes])
            for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
        ]
        w_ih, b_ih, w_hh, b_hh = params  # [D, 3, I], [D, 3], [D, 3, 1], [D, 3]
        hidden = _ScalarGRULayer.apply(xs, w_ih, b_ih, w_hh[..., 0], b_hh)  # [T, D, N]
        if layer < gru.num_layers - 1:
            if gru.dropout and gru.training:
                hidden = torch.nn.functional.dropout(hidden, gru.dropout, training=True)
            xs = _next_input(hidden, n_dir)
    return _batch_first(hidden)
