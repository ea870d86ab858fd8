"""A fast CPU path for GRUs whose hidden size is 1, the recurrent layer FSP-Net uses.

``torch.nn.GRU`` on a CPU builds an autograd graph of about ten nodes per time step; over
FSP-Net's 240 energy bins, 2 layers and 2 directions that is ~10,000 nodes and ~170 ms of CPU
for one forward+backward pass of a batch of 60. With hidden size 1 every gate is a scalar per
spectrum, so:

* forward: the input projections of all steps are one einsum; the sequential part runs both
  directions together in one loop of in-place numpy ufunc calls (no autograd recording, about
  half of torch's per-call overhead at this size), keeping the gates;
* backward: fully vectorised. The adjoint of the hidden state obeys a *linear* scalar
  recurrence, solved by a log-depth parallel scan; every gradient is then one reduction over
  batch and time.

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


def _reverse_linear_scan(coeff: Tensor, value: Tensor) -> Tensor:
    """Solve ``y[t] = value[t] + coeff[t] * y[t+1]`` (``y[T] = 0``) along dim 0.

    ``coeff`` has one row fewer than ``value`` (``coeff[t]`` links rows t and t+1).
    Hillis-Steele scan: ceil(log2 T) vectorised steps of products and sums, no division.
    """
    value = value.clone()
    steps = value.shape[0]
    shift = 1
    while shift < steps:
        # coeff[t] is now the product of the links from row t to row t + shift
        value[:-shift] = torch.addcmul(value[:-shift], coeff, value[shift:])
        coeff = coeff[: steps - 2 * shift] * coeff[shift:] if 2 * shift < steps else coeff
        shift *= 2
    return value


def _recurrence(gates: np.ndarray, w_rzm: np.ndarray, u_all: np.ndarray) -> None:
    """The sequential part of the GRU, in place: gates [T, 4, D, N] rows (r, z, m, s)
    pre-activations become (r, z, m, s); u_all [T+1, D, N] gets u_t = (h_t + 1) / 2.

    numpy ufuncs with ``out=`` cost about half of torch's per-call overhead on these
    [D, N]-sized steps, and the loop is nothing but such calls.
    """
    tmp = np.empty_like(u_all[0])
    tmp3 = np.empty_like(gates[0, :3])
    mul, add, sub = np.multiply, np.add, np.subtract
    u = u_all[0]
    views = [(g[:3], g[:2], g[0], g[1], g[2], g[3], u_next) for g, u_next in zip(gates, u_all[1:])]
    for rzm, rz, r, z, m, s, u_next in views:
        mul(w_rzm, u, out=tmp3)
        add(rzm, tmp3, out=rzm)
        expit(rz, out=rz)
        mul(r, m, out=tmp)
        add(s, tmp, out=s)
        expit(s, out=s)
        sub(u, s, out=tmp)
        mul(z, tmp, out=tmp)
        u = add(s, tmp, out=u_next)  # u' = s + z (u - s)


class _ScalarGRULayer(torch.autograd.Function):
    """One GRU layer, hidden size 1, one or two directions, batch-first input."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: tp.Any,
        x: Tensor,
        w_ih: Tensor,
        b_ih: Tensor,
        w_hh: Tensor,
        b_hh: Tensor,
    ) -> Tensor:
        # x [N, T, I]; w_ih [D, 3, I]; b_ih, w_hh, b_hh [D, 3]; gates ordered (r, z, n) as nn.GRU
        n_dir = w_ih.shape[0]
        steps = x.shape[1]
        xs = torch.stack([x, x.flip(1)]) if n_dir == 2 else x.unsqueeze(0)  # [D, N, T, I]
        # The loop runs on u = (h + 1) / 2 so that every step is sigmoids and a lerp:
        #   rz = sigmoid(a_rz + b_rz + W_rz h)   = sigmoid(a_rz + (b_rz - W_rz) + 2 W_rz u)
        #   n  = tanh(a_n + r (W_n h + b_n))     = 2 s - 1,  s = sigmoid(2 a_n + r m),
        #   m  = 2 (W_n h + b_n)                 = 4 W_n u + 2 (b_n - W_n)
        #   h' = n + z (h - n)                  <=>  u' = s + z (u - s)
        # Rows of `gates` per step: r, z, m, s pre-activations,
        # so one multiply-add updates r, z and m together.
        w_r, w_z, w_n = w_hh.unbind(1)  # each [D]
        b_r, b_z, b_n = b_hh.unbind(1)
        proj = torch.einsum("dnti,dgi->tgdn", xs, w_ih)  # [T, 3, D, N] input projections
        gates = x.new_empty(steps, 4, n_dir, x.shape[0])
        gates[:, :2] = proj[:, :2] + (b_ih[:, :2] + b_hh[:, :2] - w_hh[:, :2]).T[..., None]
        gates[:, 2] = (2 * (b_n - w_n))[:, None]
        gates[:, 3] = 2 * (proj[:, 2] + b_ih[:, 2, None])
        w_rzm = torch.stack([2 * w_r, 2 * w_z, 4 * w_n])[..., None]  # [3, D, 1]
        u_all = x.new_full((steps + 1, n_dir, x.shape[0]), 0.5)  # [T+1, D, N]; h_0 = 0
        _recurrence(gates.numpy(), w_rzm.numpy(), u_all.numpy())
        hidden = u_all.mul_(2).sub_(1)  # [T+1, D, N]
        gates[:, 2] = gates[:, 3].mul_(2).sub_(1)  # s -> n, in the m row
        gates = gates[:, :3]  # [T, 3, D, N]: r, z, n
        ctx.save_for_backward(xs, w_ih, w_hh, b_hh, gates, hidden)
        out = hidden[1:].permute(2, 0, 1)  # [N, T, D]
        if n_dir == 2:
            out = torch.stack([out[..., 0], out[..., 1].flip(1)], dim=-1)
        return out.contiguous()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: tp.Any, grad_out: Tensor
    ) -> tuple[Tensor | None, ...]:
        xs, w_ih, w_hh, b_hh, gates, hidden = ctx.saved_tensors
        n_dir = w_ih.shape[0]
        # everything below is [T, D, N] in each direction's own time order
        grad = grad_out.permute(1, 2, 0)
        if n_dir == 2:
            grad = torch.stack([grad[:, 0], grad[:, 1].flip(0)], dim=1)
        r, z, n = gates.unbind(1)
        h_prev = hidden[:-1]
        w_r, w_z, w_n = w_hh.unbind(1)
        w_r, w_z, w_n = w_r[:, None], w_z[:, None], w_n[:, None]  # [D, 1]
        ghn = torch.addcmul(b_hh[:, 2, None], w_n, h_prev)  # W_hn h + b_hn
        # d h_t / d pre-activation of each gate, per unit upstream gradient
        e_n = (1 - z) * (1 - n * n)
        e_z = (h_prev - n) * z * (1 - z)
        e_r = e_n * ghn * r * (1 - r)
        # d h_t / d h_{t-1}, needed for t >= 1 only
        jac = z[1:] + e_z[1:] * w_z + e_r[1:] * w_r + e_n[1:] * r[1:] * w_n
        lam = _reverse_linear_scan(jac, grad)  # lam[t] = grad[t] + jac[t+1] lam[t+1]
        d_pre = torch.stack([lam * e_r, lam * e_z, lam * e_n], dim=1)  # [T, 3, D, N]
        d_gh = d_pre.clone()
        d_gh[:, 2] *= r
        grad_w_hh = torch.einsum("tgdn,tdn->dg", d_gh, h_prev)
        grad_b_hh = d_gh.sum(dim=(0, 3)).T
        grad_w_ih = torch.einsum("tgdn,dnti->dgi", d_pre, xs)
        grad_b_ih = d_pre.sum(dim=(0, 3)).T
        grad_x = None
        if ctx.needs_input_grad[0]:
            dxs = torch.einsum("tgdn,dgi->dnti", d_pre, w_ih)
            grad_x = dxs[0] + dxs[1].flip(1) if n_dir == 2 else dxs[0]
        return grad_x, grad_w_ih, grad_b_ih, grad_w_hh, grad_b_hh


def scalar_gru(gru: torch.nn.GRU, x: Tensor) -> Tensor:
    """Run ``gru`` (hidden size 1, batch first, biases on) on CPU ``x`` [N, T, I], float32/64.

    Matches ``gru(x)[0]`` including inter-layer dropout in training mode; returns [N, T, D].
    """
    suffixes = ["", "_reverse"] if gru.bidirectional else [""]
    for layer in range(gru.num_layers):
        params = [
            torch.stack([getattr(gru, f"{name}_l{layer}{sfx}") for sfx in suffixes])
            for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
        ]
        w_ih, b_ih, w_hh, b_hh = params  # [D, 3, I], [D, 3], [D, 3, 1], [D, 3]
        x = _ScalarGRULayer.apply(x, w_ih, b_ih, w_hh[..., 0], b_hh)
        if gru.dropout and gru.training and layer < gru.num_layers - 1:
            x = torch.nn.functional.dropout(x, gru.dropout, training=True)
    return x
