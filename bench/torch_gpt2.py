"""The PyTorch side of bench/train.py: GPT-2 as nanoGPT writes it, in the shapes of llmc_kernels' GPT2Config.

nn.Linear layers (one addmm with the bias), scaled_dot_product_attention (PyTorch's fused attention
kernels), tanh GELU, tied wte, fused AdamW: PyTorch at its usual best, eager or under torch.compile.
``load_llmc`` copies our parameters in (llm.c's tensors, [out, in] weights as nn.Linear stores them), so
tests/test_bench_torch_gpt2.py can check that both models compute the same loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, C: int, NH: int):
        super().__init__()
        self.NH = NH
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.c_fcproj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.c_fcproj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class TorchGPT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg.channels
        self.V = cfg.vocab_size
        self.wte, self.wpe = nn.Embedding(cfg.padded_vocab_size, C), nn.Embedding(cfg.max_seq_len, C)
        self.blocks = nn.ModuleList(Block(C, cfg.num_heads) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(C)
        for m in self.modules():  # GPT-2's scheme (normal, std 0.02; zero biases), as ours
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets, exact: bool = False):
        """Mean cross-entropy. ``exact``: over the real vocabulary only, as llm.c and ours (a copy of the
        logits); otherwise over the padded one, as nanoGPT trains (the 47 padding columns are never targets)."""
        x = self.wte(idx) + self.wpe.weight[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        if exact:
            logits = logits[..., : self.V]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def load_llmc(self, params: dict) -> TorchGPT2:
        """Copy llm.c-layout tensors (name -> host array) in."""
        t = lambda a: torch.as_tensor(a, dtype=self.wte.weight.dtype, device=self.wte.weight.device)
        self.wte.weight.copy_(t(params["wte"]))
        self.wpe.weight.copy_(t(params["wpe"]))
        for l, b in enumerate(self.blocks):
            for mod, w, bias in (
                (b.ln_1, "ln1w", "ln1b"),
                (b.ln_2, "ln2w", "ln2b"),
                (b.c_attn, "qkvw", "qkvb"),
                (b.c_proj, "attprojw", "attprojb"),
                (b.c_fc, "fcw", "fcb"),
                (b.c_fcproj, "fcprojw", "fcprojb"),
            ):
                mod.weight.copy_(t(params[w][l]))
                mod.bias.copy_(t(params[bias][l]))
        self.ln_f.weight.copy_(t(params["lnfw"]))
        self.ln_f.bias.copy_(t(params["lnfb"]))
        return self
