"""What only a CUDA GPU can show: training, resuming, the GRU, prediction and the physics on cuda.

Marked ``gpu``: without CUDA every test skips with a one-line reason (CI has no GPU), unless
``FSPNET_REQUIRE_CUDA=1`` (set by ``benchmarks/gpu_check.sh``), when a missing GPU fails them.
``python -m pytest -m gpu tests/fspnet_tests/test_gpu.py`` runs them.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from fspnet.config import from_dict, load_config
from fspnet.nets import build_network, decoder_config
from fspnet.nets._layers import Recurrent
from fspnet.train import _EpochState, _optimizer, _train_epoch, train

from .conftest import make_dataset

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _cuda() -> None:
    if not torch.cuda.is_available():
        if os.environ.get("FSPNET_REQUIRE_CUDA") == "1":
            pytest.fail("FSPNET_REQUIRE_CUDA=1 but torch.cuda.is_available() is False")
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")


class _SetAtPoll(threading.Event):
    """An event that sets itself at its n-th ``is_set()``: a signal arriving at a known batch."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.polls = n, 0

    def is_set(self) -> bool:
        self.polls += 1
        if self.polls >= self.n:
            self.set()
        return super().is_set()


def _history(run_dir):
    return [{k: v for k, v in h.items() if k != "time_s"} for h in json.loads((run_dir / "metrics.json").read_text())["history"]]


def test_trainer_on_cuda_interrupted_mid_epoch_resumes_exactly(base_overrides, tmp_path):
    # the tiny decoder has dropout: the CUDA RNG state must travel through the checkpoint too
    cfg = {**base_overrides, "training.device": "cuda", "training.epochs": 3}
    full = train(load_config(None, {**cfg, "run_dir": str(tmp_path / "full")}))
    event = _SetAtPoll(12 + 1 + 6)  # right after batch 6 of epoch 2 (12 batches an epoch)
    cut = train(load_config(None, {**cfg, "run_dir": str(tmp_path / "cut")}), interrupt=event)
    assert cut["stopped"] == "interrupted" and cut["epochs"] == 1
    resumed = train(load_config(None, {**cfg, "run_dir": str(tmp_path / "cut"), "resume": True}))
    assert resumed["epochs"] == full["epochs"] == 3
    assert _history(tmp_path / "cut") == _history(tmp_path / "full")
    wa, wb = load_file(str(tmp_path / "full" / "best.safetensors")), load_file(str(tmp_path / "cut" / "best.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_decoder_epoch_on_cuda_copies_nothing_between_host_and_device_per_batch():
    from torch.profiler import ProfilerActivity, profile

    device = torch.device("cuda")
    n, batch = 40 * 256, 256
    x, p = torch.rand(n, 240, device=device), torch.randn(n, 5, device=device)
    model = build_network(decoder_config(), (5,), (240,)).to(device)
    optimizer, _ = _optimizer(model, from_dict({"training": {"batch_size": batch}}).training, stage=0)
    shuffle = torch.Generator(device=device)
    shuffle.manual_seed(0)

    def losses(idx, x, p):
        return {"loss": F.mse_loss(model(p[idx]).flatten(1), x[idx])}

    _train_epoch(model, losses, x[: 4 * batch], p[: 4 * batch], batch, optimizer, None, shuffle, progress=False)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        es = _EpochState.begin(n, batch, shuffle)
        loss = _train_epoch(model, losses, x, p, batch, optimizer, None, shuffle, progress=False, epoch_state=es)
        torch.cuda.synchronize()
    assert loss is not None and np.isfinite(loss) and es.perm.device.type == "cuda"
    copies = [e.name for e in prof.events() if "Memcpy" in e.name and ("HtoD" in e.name or "DtoH" in e.name)]
    assert len(copies) < es.n_batches / 4, f"{len(copies)} host<->device copies in {es.n_batches} batches: {copies[:10]}"


def test_recurrent_on_cuda_matches_the_cpu_fast_path():
    torch.manual_seed(0)
    layer = Recurrent(nn.GRU(1, 1, 2, batch_first=True, bidirectional=True), "mean")
    x = torch.randn(64, 1, 240, requires_grad=True)
    cpu = layer(x)  # the hidden-size-1 numpy path
    cpu.square().sum().backward()
    grads = [x.grad.clone(), *(w.grad.clone() for w in layer.parameters())]
    layer.cuda().zero_grad()
    xc = x.detach().cuda().requires_grad_()
    gpu = layer(xc)  # cuDNN
    gpu.square().sum().backward()
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)
    for g, c in zip([xc.grad, *(w.grad for w in layer.parameters())], grads):
        torch.testing.assert_close(g.cpu(), c, rtol=1e-4, atol=1e-4)


def test_pretrained_encoder_predicts_the_same_on_cuda():
    from fspnet.predict import predict
    from fspnet.pretrained import load_pretrained

    spectra = make_dataset(300, seed=5).spectra
    cpu = predict(load_pretrained("cpu"), spectra, "cpu")
    gpu = predict(load_pretrained("cuda"), spectra, "cuda")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-6)


def test_forward_model_and_folding_on_cuda_match_the_cpu():
    from fspnet.synthesize import Synthesizer

    gen = Synthesizer({"seed": 0})
    params = torch.as_tensor(gen.sample_params(64, np.random.default_rng(0)), dtype=torch.float64)
    with torch.no_grad():
        flux_cpu = gen.model(gen.edges, params)
        flux_gpu = gen.model(gen.edges.cuda(), params.cuda())
    assert flux_gpu.device.type == "cuda"
    torch.testing.assert_close(flux_gpu.cpu(), flux_cpu, rtol=1e-9, atol=0)
    lo, hi = gen.folder.model_range
    matrix = gen.folder._counts_matrix  # [M', G] counts per photon, float64
    rate_gpu = flux_gpu[:, lo:hi] @ matrix.cuda()
    torch.testing.assert_close(rate_gpu.cpu(), flux_cpu[:, lo:hi] @ matrix, rtol=1e-9, atol=1e-12)
    # the generator folds in float32 (scaled to a maximum of 1): within float32 rounding
    torch.testing.assert_close(rate_gpu.cpu(), gen.folder.counts_rate(flux_cpu), rtol=1e-5, atol=0)
