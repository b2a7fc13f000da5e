"""GPT2 against a PyTorch GPT-2 (nanoGPT-style, written here) that reads the same llm.c checkpoint.

Loss within 1e-4, every gradient tensor within 1e-3 relative (max |ours - torch| / max |torch|), and 10
AdamW steps against torch.optim.AdamW. Torch runs in float64, so the tolerances measure our float32 model.
The torch model reads the checkpoint with its own parser (SPEC's tensor order), not ours.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _model_helpers import host, ops_under_test

from llmc_kernels.model import GPT2, REQUIRED_OPS
from llmc_kernels.model.config import GPT2Config

pytestmark = pytest.mark.slow  # GPT-2 against PyTorch: forward, backward and ten AdamW steps

torch = pytest.importorskip("torch")
F = torch.nn.functional

ORDER = (
    "wte",
    "wpe",
    "ln1w",
    "ln1b",
    "qkvw",
    "qkvb",
    "attprojw",
    "attprojb",
    "ln2w",
    "ln2b",
    "fcw",
    "fcb",
    "fcprojw",
    "fcprojb",
    "lnfw",
    "lnfb",
)


def read_llmc_checkpoint(path):
    """(maxT, V, L, NH, C, Vp), {name: float64 array} straight from the bytes, as SPEC describes the file."""
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert header[0] == 20240326 and header[1] == 3
    maxT, V, L, NH, C, Vp = (int(x) for x in header[2:8])
    shapes = [
        (Vp, C),
        (maxT, C),
        (L, C),
        (L, C),
        (L, 3 * C, C),
        (L, 3 * C),
        (L, C, C),
        (L, C),
        (L, C),
        (L, C),
        (L, 4 * C, C),
        (L, 4 * C),
        (L, C, 4 * C),
        (L, C),
        (C,),
        (C,),
    ]
    flat = np.fromfile(path, dtype=np.float32, offset=1024).astype(np.float64)
    out, at = {}, 0
    for name, shape in zip(ORDER, shapes):
        n = math.prod(shape)
        out[name] = flat[at : at + n].reshape(shape)
        at += n
    assert at == flat.size, "the file holds exactly the 16 tensors"
    return (maxT, V, L, NH, C, Vp), out


class TorchGPT2(torch.nn.Module):
    """GPT-2 as nanoGPT writes it (pre-LN blocks, tanh GELU, tied wte), on llm.c's tensors."""

    def __init__(self, path, device="cpu"):
        super().__init__()
        (self.maxT, self.V, self.L, self.NH, self.C, self.Vp), tensors = read_llmc_checkpoint(path)
        self.p = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64, device=device)) for k, v in tensors.items()}
        )

    def forward(self, idx, targets):
        p, C, NH = self.p, self.C, self.NH
        B, T = idx.shape
        x = p["wte"][idx] + p["wpe"][:T]
        mask = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
        for l in range(self.L):
            h = F.layer_norm(x, (C,), p["ln1w"][l], p["ln1b"][l], eps=1e-5)
            q, k, v = (h @ p["qkvw"][l].T + p["qkvb"][l]).split(C, dim=2)
            q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + y @ p["attprojw"][l].T + p["attprojb"][l]
            h = F.layer_norm(x, (C,), p["ln2w"][l], p["ln2b"][l], eps=1e-5)
            h = F.gelu(h @ p["fcw"][l].T + p["fcb"][l], approximate="tanh")
            x = x + h @ p["fcprojw"][l].T + p["fcprojb"][l]
        x = F.layer_norm(x, (C,), p["lnfw"], p["lnfb"], eps=1e-5)
        logits = x @ p["wte"].T  # [B, T, Vp]; padded columns are ignored
        return F.cross_entropy(logits[..., : self.V].reshape(-1, self.V), targets.reshape(-1))


def rel_err(ours, theirs) -> float:
    theirs = theirs.detach().cpu().numpy()
    return float(np.abs(host(ours).astype(np.float64) - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def batch(rng, B, T, V):
    tokens = rng.integers(0, V, size=(B, T + 1)).astype(np.int32)
    return np.ascontiguousarray(tokens[:, :-1]), np.ascontiguousarray(tokens[:, 1:])


def compare_one_step(cfg, B, T, tmp_path, ops, device="cpu", seed=7):
    path = tmp_path / "model.bin"
    GPT2.from_config(cfg, seed=seed, ops=ops).save_checkpoint(path)
    ours = GPT2.from_checkpoint(path, ops=ops)
    theirs = TorchGPT2(path, device)
    x, y = batch(np.random.default_rng(seed), B, T, cfg.vocab_size)
    xs, ys = ours.xp.asarray(x), ours.xp.asarray(y)
    loss = ours.forward(xs, ys)
    ours.zero_grad()
    ours.backward()
    t_loss = theirs(torch.from_numpy(x).long().to(device), torch.from_numpy(y).long().to(device))
    t_loss.backward()
    assert abs(loss - t_loss.item()) < 1e-4, (loss, t_loss.item())
    errors = {name: rel_err(ours.grads[name], theirs.p[name].grad) for name in ORDER}
    bad = {k: e for k, e in errors.items() if not e <= 1e-3}
    assert not bad, f"gradients off (relative to each tensor's max): {bad}"
    # wte rows past the real vocabulary are read by no token and no logit that counts: no gradient
    assert not host(ours.grads["wte"][cfg.vocab_size :]).any()
    return ours, theirs


def namespace(kind):
    """The package's kernels (with their fused classifier), the same without it (the SPEC table only: the
    path a learner's ops take), or the NumPy references."""
    if kind == "ops":
        return ops_under_test()
    if kind == "ops-unfused":
        return {name: getattr(ops_under_test(), name) for name in REQUIRED_OPS}
    from llmc_kernels import reference

    return reference


@pytest.mark.parametrize("kind", ["ops", "ops-unfused", "reference"])
@pytest.mark.parametrize("B,T", [(4, 64), (3, 37)])
def test_loss_and_every_gradient_match_torch(tmp_path, B, T, kind):
    ops = namespace(kind)
    model, _ = compare_one_step(GPT2Config.tiny(), B, T, tmp_path, ops)
    assert (model._op["fused_classifier"] is not None) == (kind == "ops")


def test_ten_adamw_steps_match_torch(tmp_path):
    """llm.c's update is p -= lr*(m_hat/(sqrt(v_hat)+eps) + wd*p); torch decays first, p *= 1 - lr*wd, then
    subtracts lr*m_hat/(sqrt(v_hat)+eps): the same arithmetic, as both use the old p for the decay."""
    ops, cfg = ops_under_test(), GPT2Config.tiny()
    lr, wd, B, T = 1e-3, 0.1, 4, 32
    path = tmp_path / "model.bin"
    GPT2.from_config(cfg, seed=3, ops=ops).save_checkpoint(path)
    ours, theirs = GPT2.from_checkpoint(path, ops=ops), TorchGPT2(path)
    opt = torch.optim.AdamW(theirs.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    rng = np.random.default_rng(11)
    batches = [batch(rng, B, T, cfg.vocab_size) for _ in range(3)]  # revisit batches: the loss must fall
    losses = []
    for step in range(1, 11):
        x, y = batches[step % 3]
        loss = ours.forward(ours.xp.asarray(x), ours.xp.asarray(y))
        ours.zero_grad()
        ours.backward()
        ours.update(lr, 0.9, 0.999, 1e-8, wd, step)
        opt.zero_grad()
        t_loss = theirs(torch.from_numpy(x).long(), torch.from_numpy(y).long())
        t_loss.backward()
        opt.step()
        losses.append((loss, t_loss.item()))
        assert abs(loss - t_loss.item()) < 1e-3, f"step {step}: {losses}"
    assert losses[-1][0] < losses[0][0] - 0.05, f"ten steps on three batches should lower the loss: {losses}"
    assert rel_err(ours.params["qkvw"], theirs.p["qkvw"]) < 1e-3


# ---------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_d12_matches_torch_on_gpu(tmp_path):
    """GPT-2 small with the package's kernels on the GPU, TF32 off, against torch float64 (on the GPU when
    torch has CUDA, else on the CPU: float64 either way)."""
    pytest.importorskip("cupy")
    from llmc_kernels import ops, runtime

    if runtime.backend() != "cuda":
        pytest.skip("needs the cuda backend")
    ops.set_matmul_precision("fp32")
    torch.backends.cuda.matmul.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ours, _ = compare_one_step(GPT2Config.d12(), 4, 128, tmp_path, ops, device=device)
    assert type(ours.params_memory).__module__.startswith("cupy")
