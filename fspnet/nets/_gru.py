"""A fast CPU path for GRUs whose hidden size is 1, the recurrent layer FSP-Net uses.

``torch.nn.GRU`` on a CPU builds an autograd graph of about ten nodes per time step; over
FSP-Net's 240 energy bins, 2 layers and 2 directions that is ~10,000 nodes and ~180 ms for one
forward+backward pass of a batch of 60. With hidden size 1 every gate is a scalar per spectrum,
so both directions run in one Python loop over time with no autograd recording (the gates are
kept), and the backward pass is vectorised: the adjoint of the hidden state obeys a *linear*
scalar recurrence, solved with a log-depth parallel scan, and every weight gradient is then one
reduction over batch and time. The weights stay in a ``torch.nn.GRU`` so that state dicts, CUDA
(cuDNN) and larger hidden sizes use PyTorch's own implementation.
"""

from __future__ import annotations

import typing as tp

import torch
from torch import Tensor


def _linear_scan(coeff: Tensor, value: Tensor) -> Tensor:
    """Solve ``y[t] = coeff[t] * y[t-1] + value[t]`` (``y[-1] = 0``) along the last dim.

    Hillis-Steele scan: ceil(log2 T) vectorised steps, only products and sums (no division).
    """
    coeff = coeff.clone()
    value = value.clone()
    steps = value.shape[-1]
    shift = 1
    while shift < steps:
        value[..., shift:] = torch.addcmul(value[..., shift:], coeff[..., shift:], value[..., :-shift])
        coeff[..., shift:] = coeff[..., shift:] * coeff[..., :-shift]
        shift *= 2
    return value


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
        # input projections for every step at once, with the r and z hidden biases folded in
        bias = b_ih + torch.cat([b_hh[:, :2], torch.zeros_like(b_hh[:, 2:])], dim=1)
        gates = torch.einsum("dnti,dgi->tgdn", xs, w_ih).add_(bias.T[None, :, :, None])
        gates = gates.contiguous()  # [T, 3, D, N]; holds (r, z, n) after the loop
        # tanh(v) = 2 sigmoid(2v) - 1: torch.tanh (like exp) takes a threaded path that stalls
        # for ~ms per call when other processes load the CPU; sigmoid does not
        gates[:, 2] *= 2
        hidden = x.new_zeros(steps + 1, n_dir, x.shape[0])  # [T+1, D, N]
        w_rz = w_hh[:, :2].T[..., None]  # [2, D, 1]
        w_n, b_n = 2 * w_hh[:, 2:], 2 * b_hh[:, 2:]  # [D, 1]
        # views made once: each step is then a few small in-place torch calls
        rz_t = gates[:, :2].unbind(0)
        r_t, z_t, n_t = gates[:, 0].unbind(0), gates[:, 1].unbind(0), gates[:, 2].unbind(0)
        h_t = hidden.unbind(0)
        h = h_t[0]
        for t in range(steps):
            rz_t[t].addcmul_(w_rz, h).sigmoid_()
            n = n_t[t].addcmul_(r_t[t], torch.addcmul(b_n, w_n, h)).sigmoid_().mul_(2).sub_(1)
            h = torch.lerp(n, h, z_t[t], out=h_t[t + 1])
        ctx.save_for_backward(xs, w_ih, w_hh, b_hh, gates, hidden)
        out = hidden[1:].permute(2, 0, 1)  # [N, T, D]
        if n_dir == 2:
            out = torch.stack([out[..., 0], out[..., 1].flip(1)], dim=-1)
        return out.contiguous()

    @staticmethod
    def backward(ctx: tp.Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        xs, w_ih, w_hh, b_hh, gates, hidden = ctx.saved_tensors
        n_dir = w_ih.shape[0]
        # everything below is [D, N, T] in each direction's own time order
        grad = grad_out.permute(2, 0, 1)
        if n_dir == 2:
            grad = torch.stack([grad[0], grad[1].flip(-1)])
        r, z, n = gates.permute(1, 2, 3, 0)
        h_prev = hidden[:-1].permute(1, 2, 0)
        w_r, w_z, w_n = w_hh.T[..., None, None]  # each [D, 1, 1]
        ghn = w_n * h_prev + b_hh[:, 2, None, None]  # W_hn h + b_hn
        # d h_t / d pre-activation of each gate, per unit upstream gradient
        e_n = (1 - z) * (1 - n * n)
        e_z = (h_prev - n) * z * (1 - z)
        e_r = e_n * ghn * r * (1 - r)
        jac = z + e_z * w_z + e_r * w_r + e_n * r * w_n  # d h_t / d h_{t-1}
        # adjoint: lam[t] = grad[t] + jac[t+1] * lam[t+1], solved backwards in time
        jac_next = torch.cat([jac[..., 1:], torch.zeros_like(jac[..., :1])], dim=-1)
        lam = _linear_scan(jac_next.flip(-1), grad.flip(-1)).flip(-1)
        d_pre = torch.stack([lam * e_r, lam * e_z, lam * e_n], dim=-1)  # [D, N, T, 3]
        d_gh = d_pre.clone()
        d_gh[..., 2] *= r
        grad_w_hh = torch.einsum("dntg,dnt->dg", d_gh, h_prev)
        grad_b_hh = d_gh.sum(dim=(1, 2))
        grad_w_ih = torch.einsum("dntg,dnti->dgi", d_pre, xs)
        grad_b_ih = d_pre.sum(dim=(1, 2))
        grad_x = None
        if ctx.needs_input_grad[0]:
            dxs = torch.einsum("dntg,dgi->dnti", d_pre, w_ih)
            grad_x = dxs[0] + dxs[1].flip(1) if n_dir == 2 else dxs[0]
        return grad_x, grad_w_ih, grad_b_ih, grad_w_hh, grad_b_hh


def scalar_gru(gru: torch.nn.GRU, x: Tensor) -> Tensor:
    """Run ``gru`` (hidden size 1, batch first, biases on) on ``x`` [N, T, I] with the fast path.

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
