"""Bernoulli RBM: energy / free energy / partition function / likelihood gradient vs brute-force enumeration
(float64), block-Gibbs kernels (reference, C++, Triton interpreter) vs exact transition probabilities, CD/PCD."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import physkernels

from physkernels import available_backends
from physkernels.physics import rbm as rbm_module
from physkernels.physics.ising import exact
from physkernels.physics.rbm import BernoulliRBM, all_binary_states, gibbs, log_likelihood_gradient_exact, train_rbm
from devices import GPU_BACKENDS, needs_gpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLER_BACKENDS = [b for b in ("reference", "cpp", "triton") if b in available_backends("cpu")]


def random_rbm(nv, nh, seed, dtype=torch.float64, scale=1.0):
    rbm = BernoulliRBM(nv, nh, dtype=dtype, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in rbm.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=dtype))
    return rbm


def state_index(v):
    return (v.long() << torch.arange(v.shape[1])).sum(1)


@pytest.mark.parametrize("nv,nh", [(3, 5), (5, 2), (4, 4)])
def test_energy_free_energy_partition_vs_enumeration(nv, nh):
    rbm = random_rbm(nv, nh, seed=nv * 10 + nh)
    vs, hs = all_binary_states(nv), all_binary_states(nh)
    # Eq. 23 term by term.
    v, h = vs[5 % len(vs)], hs[-1]
    expected = -(rbm.b * v).sum() - (rbm.c * h).sum() - sum(v[i] * rbm.W[i, j] * h[j] for i in range(nv)
                                                            for j in range(nh))
    torch.testing.assert_close(rbm.energy(v[None], h[None])[0], expected)
    joint = -rbm.energy(vs.repeat_interleave(len(hs), 0), hs.repeat(len(vs), 1)).reshape(len(vs), len(hs))
    torch.testing.assert_close(rbm.free_energy(vs), -torch.logsumexp(joint, 1))
    torch.testing.assert_close(rbm.log_partition(), torch.logsumexp(joint.flatten(), 0))
    torch.testing.assert_close(rbm.log_prob(vs).exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(rbm.hidden_probs(vs), torch.sigmoid(vs @ rbm.W + rbm.c))


@pytest.mark.parametrize("nv,nh", [(4, 3), (3, 6)])
def test_log_likelihood_gradient_vs_joint_enumeration(nv, nh):
    rbm = random_rbm(nv, nh, seed=7 + nv)
    data = torch.bernoulli(torch.full((11, nv), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad(rbm.log_prob(data).mean(), [rbm.W, rbm.b, rbm.c])
    exact = log_likelihood_gradient_exact(rbm, data)
    for got, name in zip(grads, "Wbc"):
        torch.testing.assert_close(got, exact[name], rtol=1e-10, atol=1e-12)
    torch.autograd.gradcheck(lambda W, b, c: _log_prob_with(rbm, W, b, c, data),
                             (rbm.W.detach().clone().requires_grad_(), rbm.b.detach().clone().requires_grad_(),
                              rbm.c.detach().clone().requires_grad_()))


def _log_prob_with(rbm, W, b, c, data):
    clone = BernoulliRBM(rbm.n_visible, rbm.n_hidden, dtype=torch.float64)
    del clone.W, clone.b, clone.c
    clone.W, clone.b, clone.c = W, b, c
    return clone.log_prob(data).mean()


def test_contrastive_loss_gradient_is_cd_estimate():
    """grad of mean F(v_data) - mean F(v_model): -<v p(h|v)>_data + <v p(h|v)>_samples (and b, c terms)."""
    rbm = random_rbm(5, 4, seed=2)
    g = torch.Generator().manual_seed(0)
    vd = torch.bernoulli(torch.full((6, 5), 0.5, dtype=torch.float64), generator=g)
    vm = torch.bernoulli(torch.full((9, 5), 0.5, dtype=torch.float64), generator=g)
    gW, gb, gc = torch.autograd.grad(rbm.contrastive_loss(vd, vm), [rbm.W, rbm.b, rbm.c])
    pd, pm = rbm.hidden_probs(vd).detach(), rbm.hidden_probs(vm).detach()
    torch.testing.assert_close(gW, -(vd.t() @ pd) / 6 + (vm.t() @ pm) / 9)
    torch.testing.assert_close(gb, -vd.mean(0) + vm.mean(0))
    torch.testing.assert_close(gc, -pd.mean(0) + pm.mean(0))


def transition_matrix(rbm):
    """T[v, v'] = sum_h p(h | v) p(v' | h) by enumeration; joint J[v, h, v'] too."""
    vs, hs = all_binary_states(rbm.n_visible), all_binary_states(rbm.n_hidden)
    with torch.no_grad():
        ph = rbm.hidden_probs(vs)
        p_h_given_v = torch.prod(torch.where(hs[None] == 1, ph[:, None], 1 - ph[:, None]), -1)  # (V, H)
        pv = rbm.visible_probs(hs)
        p_v_given_h = torch.prod(torch.where(vs[None] == 1, pv[:, None], 1 - pv[:, None]), -1)  # (H, V)
    return p_h_given_v @ p_v_given_h, p_h_given_v[:, :, None] * p_v_given_h[None]


def assert_frequencies(counts, probs, n, sigmas=5.0):
    """Every empirical frequency within `sigmas` binomial standard deviations (+ a small floor) of probs."""
    freq = counts.double() / n
    tol = sigmas * torch.sqrt(probs * (1 - probs) / n) + 2.0 / n
    assert torch.all((freq - probs).abs() <= tol), ((freq - probs).abs() / tol).max()


@pytest.mark.parametrize("backend", SAMPLER_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gibbs_kernel_matches_exact_transitions(backend, dtype):
    if backend == "triton" and dtype == torch.float64:
        pytest.skip("the Triton kernel runs in float32")
    rbm = random_rbm(4, 3, seed=11)
    n = 4096 if backend == "triton" else 20000
    start = 6  # v0 = (0, 1, 1, 0)
    v0 = all_binary_states(4, dtype)[start].expand(n, 4).contiguous()
    T, joint = transition_matrix(rbm)
    W, b, c = (t.detach().to(dtype) for t in (rbm.W, rbm.b, rbm.c))
    # One step: joint distribution of (h_1, v_1).
    v1, h1 = gibbs(v0, W, b, c, k=1, seed=5, backend=backend)
    assert v1.dtype == dtype and h1.shape == (n, 3) and set(v1.unique().tolist()) <= {0.0, 1.0}
    pair = state_index(h1) * 16 + state_index(v1)
    assert_frequencies(torch.bincount(pair, minlength=128), joint[start].flatten(), n)
    # Three steps: v_3 ~ T^3[v0, :].
    v3, _ = gibbs(v0, W, b, c, k=3, seed=6, backend=backend)
    assert_frequencies(torch.bincount(state_index(v3), minlength=16), torch.linalg.matrix_power(T, 3)[start], n)


@pytest.mark.skipif("cpp" not in SAMPLER_BACKENDS, reason="physkernels._C not built")
def test_cpp_gibbs_is_deterministic_thread_independent_and_continues():
    rbm = random_rbm(7, 5, seed=3, dtype=torch.float32)
    # 4099 chains: enough work for the kernel to use several threads (4099 * 35 * 4 > 2 * 2^18 multiply-adds).
    v0 = torch.bernoulli(torch.full((4099, 7), 0.5), generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = rbm.sample(v0, k=4, seed=9, backend="cpp")
        torch.set_num_threads(max(2, threads))
        many = rbm.sample(v0, k=4, seed=9, backend="cpp")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])
    first, _ = rbm.sample(v0, k=2, seed=9, backend="cpp")
    continued = rbm.sample(first, k=2, seed=9, step_offset=2, backend="cpp")
    assert torch.equal(continued[0], one[0]) and torch.equal(continued[1], one[1])
    assert not torch.equal(rbm.sample(v0, k=4, seed=10, backend="cpp")[0], one[0])


def test_gibbs_bad_input():
    W, b, c = torch.zeros(4, 3), torch.zeros(4), torch.zeros(3)
    with pytest.raises(ValueError, match="shape mismatch"):
        gibbs(torch.zeros(2, 5), W, b, c)
    with pytest.raises(TypeError, match="dtype"):
        gibbs(torch.zeros(2, 4, dtype=torch.float64), W, b, c)
    with pytest.raises(ValueError, match="k must"):
        gibbs(torch.zeros(2, 4), W, b, c, k=0)
    with pytest.raises(ValueError, match="seed"):
        gibbs(torch.zeros(2, 4), W, b, c, seed=-1)
    with pytest.raises(ValueError, match="positive"):
        BernoulliRBM(0, 3)
    with pytest.raises(ValueError, match="too large"):
        all_binary_states(rbm_module.MAX_ENUMERATION_UNITS + 1)
    rbm = BernoulliRBM(4, 3)
    with pytest.raises(ValueError, match="method"):
        train_rbm(rbm, torch.zeros(10, 4), method="sgd")
    with pytest.raises(ValueError, match="shape"):
        train_rbm(rbm, torch.zeros(10, 5))


@pytest.mark.parametrize("method,k", [("cd", 1), ("pcd", 1)])
def test_training_reduces_exact_kl(method, k):
    """A 6-visible RBM learns a correlated target (two 'ferromagnetic' modes + noise): the exact KL drops."""
    vs = all_binary_states(6)
    ones = vs.sum(1)
    target = torch.softmax(1.5 * (ones - 3).abs(), 0)
    data = vs[torch.multinomial(target, 2000, replacement=True, generator=torch.Generator().manual_seed(0))]
    rbm = BernoulliRBM(6, 6, dtype=torch.float64, seed=1)

    def kl(model):
        with torch.no_grad():
            return float((target * (target.log() - model.log_prob(vs))).sum())

    before = kl(rbm)
    history = train_rbm(rbm, data, method=method, k=k, epochs=5, batch_size=100, lr=0.05, seed=0, progress=False,
                        on_epoch=lambda e, m: {"kl": kl(m)})
    assert len(history["kl"]) == 5
    assert history["kl"][-1] < 0.5 * before


@pytest.mark.slow
def test_rbm_driver_quick(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "models.ising_rbm", "--quick", "--no-progress", "--epochs", "2",
                    "--out", str(tmp_path)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    result = json.loads((tmp_path / "rbm.json").read_text())
    assert (tmp_path / "kl_quick.png").stat().st_size > 1000  # a quick run says so in its file names
    assert set(result["runs"]) == {"CD-1", "CD-10", "PCD-1"}
    for run in result["runs"].values():
        assert run["kl_exact_to_rbm"] < run["kl_initial"]
        energy = run["energy_per_spin"]
        assert energy["ising_exact"] == pytest.approx(exact(4, 0.4352)["energy"], abs=1e-9)  # Kaufman vs enumeration
        # The Gibbs kernel samples the RBM's own distribution: exact and sampled energies agree.
        assert energy["rbm_gibbs"] == pytest.approx(energy["rbm_exact"], abs=0.1)


@pytest.mark.skipif("triton" not in SAMPLER_BACKENDS, reason="triton not available")
def test_triton_gibbs_limits_and_seeds():
    W, b, c = torch.zeros(130, 3), torch.zeros(130), torch.zeros(3)
    with pytest.raises(physkernels.BackendUnavailableError, match="128"):
        gibbs(torch.zeros(2, 130), W, b, c, backend="triton")
    with pytest.raises(physkernels.BackendUnavailableError, match="float32"):
        gibbs(torch.zeros(2, 4, dtype=torch.float64), *(t.double() for t in (W[:4], b[:4], c)), backend="triton")
    rbm = random_rbm(5, 4, seed=4, dtype=torch.float32)
    v0 = torch.zeros(64, 5)
    first = rbm.sample(v0, k=2, seed=1, backend="triton")[0]
    assert torch.equal(first, rbm.sample(v0, k=2, seed=1, backend="triton")[0])
    assert not torch.equal(first, rbm.sample(v0, k=2, seed=1, step_offset=2, backend="triton")[0])


def test_auto_backend_uses_reference_for_large_rbms_on_cpu():
    W, b, c = torch.randn(200, 100) * 0.1, torch.zeros(200), torch.zeros(100)
    v0 = torch.bernoulli(torch.full((3, 200), 0.5))
    auto = gibbs(v0, W, b, c, k=2, seed=4)
    reference = gibbs(v0, W, b, c, k=2, seed=4, backend="reference")
    assert torch.equal(auto[0], reference[0]) and torch.equal(auto[1], reference[1])


def _counter_based_gibbs(v0, W, b, c, k, seed, step_offset):
    """Pure-Python twin of the C++ sampler's arithmetic and random stream (csrc/rbm.cpp, csrc/ising_rng.h): chain
    ``n`` draws ``uniform = mix64(site_key + GAMMA) >> 11 * 2^-53`` with ``site_key = stream_key(seed, n) ^
    mix64(counter)``, counter ``(2 step + phase) * max(nv, nh) + unit``; a unit turns on when the uniform is below
    ``1 / (1 + exp(-activation))``, activations summed in float64 in increasing input order."""
    from physkernels.physics.ising.triton_kernels import GAMMA, MASK64, mix64, stream_key

    def uniform(key, counter):
        site = key ^ mix64(counter)
        return (mix64((site + GAMMA) & MASK64) >> 11) * 2.0 ** -53

    batch, nv = v0.shape
    nh = W.shape[1]
    units = max(nv, nh)
    W, b, c = W.tolist(), b.tolist(), c.tolist()
    v_out, h_out = [], []
    for chain in range(batch):
        v, h = list(v0[chain].tolist()), [0.0] * nh
        key = stream_key(seed, chain)
        for t in range(k):
            step = step_offset + t
            act = list(c)
            for i in range(nv):
                for j in range(nh):
                    act[j] += v[i] * W[i][j]
            h = [1.0 if uniform(key, 2 * step * units + j) < 1.0 / (1.0 + math.exp(-act[j])) else 0.0
                 for j in range(nh)]
            act = list(b)
            for j in range(nh):
                for i in range(nv):
                    act[i] += h[j] * W[i][j]
            v = [1.0 if uniform(key, (2 * step + 1) * units + i) < 1.0 / (1.0 + math.exp(-act[i])) else 0.0
                 for i in range(nv)]
        v_out.append(v)
        h_out.append(h)
    return torch.tensor(v_out, dtype=v0.dtype), torch.tensor(h_out, dtype=v0.dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpp_gibbs_matches_the_counter_based_stream_exactly(dtype):
    """Same keys, same draws: the C++ sampler equals its pure-Python twin bit for bit (a biased logit, a wrong unit
    or step index in the counter, or a swapped phase changes samples at once: a logit shifted by 0.05 flips ~1% of
    the draws, so some of these ~5000 draws)."""
    if "cpp" not in available_backends("cpu"):
        pytest.skip("the C++ module is not built")
    torch.manual_seed(8)
    for nv, nh, batch, k in ((5, 3, 32, 10), (3, 7, 16, 6), (6, 6, 8, 10)):  # ~5000 draws
        W = (torch.randn(nv, nh) * 1.5).to(dtype)
        b, c = torch.randn(nv).to(dtype), torch.randn(nh).to(dtype)
        v0 = torch.randint(0, 2, (batch, nv)).to(dtype)
        got = gibbs(v0, W, b, c, k=k, seed=11, step_offset=4, backend="cpp")
        want = _counter_based_gibbs(v0, W.double(), b.double(), c.double(), k, 11, 4)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.gpu
@needs_gpu
def test_auto_samples_float64_on_the_gpu_with_torch():
    rbm = random_rbm(4, 3, seed=2)
    W, b, c = (t.detach().cuda() for t in (rbm.W, rbm.b, rbm.c))
    v, h = gibbs(torch.ones(8, 4, dtype=torch.float64, device="cuda"), W, b, c, k=2, seed=1)
    assert v.dtype == h.dtype == torch.float64 and v.is_cuda


@pytest.mark.gpu
@needs_gpu
def test_triton_gibbs_samples_the_exact_transitions_on_the_gpu():
    if "triton" not in GPU_BACKENDS:
        pytest.skip("triton unavailable")
    rbm = random_rbm(4, 3, seed=11)
    n, start = 1 << 16, 6
    v0 = all_binary_states(4, torch.float32)[start].expand(n, 4).contiguous().cuda()
    T, joint = transition_matrix(rbm)
    W, b, c = (t.detach().float().cuda() for t in (rbm.W, rbm.b, rbm.c))
    v1, h1 = gibbs(v0, W, b, c, k=1, seed=5, backend="triton")
    pair = state_index(h1.cpu()) * 16 + state_index(v1.cpu())
    assert_frequencies(torch.bincount(pair, minlength=128), joint[start].flatten(), n)
