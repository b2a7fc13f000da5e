"""Every kernel of llmc_kernels at GPT-2 124M training sizes, against the GPU's ceilings and PyTorch.

    python bench/kernels.py [--repeat 20] [--only gelu,layernorm] [--results bench/RESULTS.md]

For each op: the median time of repeated launches (CUDA events, L2 flushed between repeats), the bytes it
must move and the FLOPs it must do (counted by hand below, float32 = 4 bytes), the achieved GB/s or TFLOP/s
and their fraction of the ceilings measured in this same run (a 1 GiB device-to-device copy; cuBLAS SGEMM
8192x768x3072 in fp32 and TF32), and PyTorch's time for the same op on the same inputs when torch is
installed. The table is printed and written into the results file with the device, date and commit.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from _results import RESULTS, provenance, write_section  # noqa: E402

B, T, C, NH, V, VP = 8, 1024, 768, 12, 50257, 50304
BT, F4 = B * T, 4  # rows; bytes per float32
ADAMW_PARAMS = 124_475_904  # GPT-2 124M with Vp = 50304


@dataclass
class Case:
    op: str
    ours: dict  # label -> fn()
    torch: object = None  # fn() or None
    bytes: float | None = None  # bytes that must move (read + write)
    flops: float | None = None
    note: str = ""
    rows: list = field(default_factory=list)


def _torch():
    try:
        import torch

        return torch if torch.cuda.is_available() else None
    except ImportError:
        return None


def cases(cp, ops, torch):
    """Build every case; inputs drawn once, shared by our kernels and PyTorch's (zero-copy via DLPack)."""
    rng = cp.random.default_rng(0)
    f32 = lambda *shape, scale=1.0: rng.standard_normal(shape, dtype=cp.float32) * scale
    tt = (lambda a: torch.from_dlpack(a)) if torch else None
    out = []

    # encoder: gather wte rows and add wpe rows; backward scatters with atomics
    inp = rng.integers(0, V, (B, T), dtype=cp.int32)
    wte, wpe, enc = f32(VP, C), f32(T, C), cp.empty((B, T, C), cp.float32)
    denc, dwte, dwpe = f32(B, T, C), cp.zeros((VP, C), cp.float32), cp.zeros((T, C), cp.float32)
    tor = None
    if torch:
        ti, twte, twpe, tenc = tt(inp).long(), tt(wte), tt(wpe), tt(enc)
        tor = lambda: torch.add(twte[ti], twpe, out=tenc)
    out.append(
        Case(
            "encoder_forward",
            {"ours": lambda: ops.encoder_forward(enc, inp, wte, wpe, B, T, C)},
            tor,
            bytes=F4 * (BT * C * 2 + T * C + BT),
        )
    )
    if torch:
        tdw, tdp, td = tt(dwte), tt(dwpe), tt(denc)
        tor = lambda: (tdw.index_add_(0, ti.view(-1), td.view(-1, C)), tdp.add_(td.sum(0)))
    out.append(
        Case(
            "encoder_backward",
            {"ours": lambda: ops.encoder_backward(dwte, dwpe, denc, inp, B, T, C)},
            tor,
            bytes=F4 * (BT * C * 3 + B * T * C * 2 // B + BT),
        )
    )

    # layernorm
    x, w, b = f32(B, T, C), f32(C), f32(C)
    y, mean, rstd = cp.empty_like(x), cp.empty((B, T), cp.float32), cp.empty((B, T), cp.float32)
    dy, dx, dw, db = f32(B, T, C), cp.zeros_like(x), cp.zeros_like(w), cp.zeros_like(b)
    if torch:
        tx, tw, tb = tt(x), tt(w), tt(b)
        tor = lambda: torch.nn.functional.layer_norm(tx, (C,), tw, tb, 1e-5)
    out.append(
        Case(
            "layernorm_forward",
            {"ours": lambda: ops.layernorm_forward(y, mean, rstd, x, w, b, B, T, C)},
            tor,
            bytes=F4 * (2 * BT * C + 2 * BT + 2 * C),
        )
    )
    ops.layernorm_forward(y, mean, rstd, x, w, b, B, T, C)
    if torch:
        tdy, tmean, trstd = tt(dy), tt(mean).view(B, T, 1), tt(rstd).view(B, T, 1)
        tor = lambda: torch.ops.aten.native_layer_norm_backward(tdy, tx, [C], tmean, trstd, tw, tb, [True, True, True])
    out.append(
        Case(
            "layernorm_backward",
            {"ours": lambda: ops.layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, B, T, C)},
            tor,
            bytes=F4 * (4 * BT * C + 2 * BT + 5 * C),
        )
    )

    # matmul: the MLP's fc layer, the largest of GPT-2 124M's linear layers (besides the logits)
    OC = 4 * C
    a, wm, bm = f32(B, T, C), f32(OC, C, scale=0.02), f32(OC)
    o, do = cp.empty((B, T, OC), cp.float32), f32(B, T, OC)
    da, dwm, dbm = cp.zeros_like(a), cp.zeros_like(wm), cp.zeros_like(bm)
    flops = 2 * BT * C * OC
    ours = {
        "cuBLAS fp32": lambda: ops.matmul_forward(o, a, wm, bm, B, T, C, OC),
        "own tiled kernel": lambda: ops.matmul_forward_kernel(o, a, wm, bm, B, T, C, OC),
    }
    tor = None
    if torch:
        ta, twm, tbm, to = tt(a), tt(wm), tt(bm), tt(o)
        tor = lambda: torch.addmm(tbm, ta.view(BT, C), twm.t(), out=to.view(BT, OC))
    out.append(Case("matmul_forward", ours, tor, flops=flops, note="8192x768 @ 768x3072 + bias"))
    ours = {
        "cuBLAS fp32": lambda: ops.matmul_backward(da, dwm, dbm, do, a, wm, B, T, C, OC),
        "own tiled kernel": lambda: ops.matmul_backward_kernel(da, dwm, dbm, do, a, wm, B, T, C, OC),
    }
    if torch:
        tda, tdwm, tdbm, tdo = tt(da), tt(dwm), tt(dbm), tt(do)
        tor = lambda: (
            tda.view(BT, C).addmm_(tdo.view(BT, OC), twm),
            tdwm.addmm_(tdo.view(BT, OC).t(), ta.view(BT, C)),
            tdbm.add_(tdo.view(BT, OC).sum(0)),
        )
    out.append(Case("matmul_backward", ours, tor, flops=2 * flops))

    # attention (plain, llm.c-style: preatt and att are materialised), paired with PyTorch's matmul+softmax
    qkv = f32(B, T, 3 * C)
    att_out, preatt, att = cp.empty((B, T, C), cp.float32), f32(B, NH, T, T), cp.empty((B, NH, T, T), cp.float32)
    hs = C // NH
    att_bytes = F4 * (3 * BT * C + 2 * B * NH * T * T // 2 * 2 + BT * C)
    att_flops = 2 * 2 * B * NH * T * T * hs // 2  # QK^T and att@V over the causal half
    if torch:
        tq = tt(qkv).view(B, T, 3, NH, hs).permute(2, 0, 3, 1, 4)
        mask = torch.ones(T, T, dtype=torch.bool, device="cuda").tril()

        def tor():
            s = (tq[0] @ tq[1].transpose(-1, -2)) * (1.0 / math.sqrt(hs))
            p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
            return p @ tq[2]

    out.append(
        Case(
            "attention_forward",
            {"ours": lambda: ops.attention_forward(att_out, preatt, att, qkv, B, T, C, NH)},
            tor if torch else None,
            bytes=att_bytes,
            flops=att_flops,
            note="PyTorch: matmul+softmax",
        )
    )
    ops.attention_forward(att_out, preatt, att, qkv, B, T, C, NH)
    dqkv, dpre, datt, dao = cp.zeros_like(qkv), cp.zeros_like(att), cp.zeros_like(att), f32(B, T, C)
    out.append(
        Case(
            "attention_backward",
            {"ours": lambda: ops.attention_backward(dqkv, dpre, datt, dao, qkv, att, B, T, C, NH)},
            None,
            bytes=F4 * (3 * BT * C * 3 + 4 * B * NH * T * T // 2 + BT * C),
            flops=2 * att_flops,
        )
    )

    # elementwise: gelu on the MLP's hidden activations, residual on the stream
    NG = BT * 4 * C
    g_in, g_out, g_d, g_dx = f32(NG), cp.empty(NG, cp.float32), f32(NG), cp.zeros(NG, cp.float32)
    if torch:
        tgi, tgd = tt(g_in), tt(g_d)
        tor = lambda: torch.nn.functional.gelu(tgi, approximate="tanh")
    out.append(Case("gelu_forward", {"ours": lambda: ops.gelu_forward(g_out, g_in, NG)}, tor, bytes=F4 * 2 * NG))
    if torch:
        tor = lambda: torch.ops.aten.gelu_backward(tgd, tgi, approximate="tanh")
    out.append(
        Case(
            "gelu_backward",
            {"ours": lambda: ops.gelu_backward(g_dx, g_in, g_d, NG)},
            tor,
            bytes=F4 * 4 * NG,
            note="ours accumulates (+=): one more read",
        )
    )
    N = BT * C  # the residual stream (no closure above reads N)
    r1, r2, r_out, r_d = f32(N), f32(N), cp.empty(N, cp.float32), f32(N)
    r_d1, r_d2 = cp.zeros(N, cp.float32), cp.zeros(N, cp.float32)
    if torch:
        tr1, tr2, tro, trd, trd1, trd2 = (tt(z) for z in (r1, r2, r_out, r_d, r_d1, r_d2))
        tor = lambda: torch.add(tr1, tr2, out=tro)
    out.append(
        Case("residual_forward", {"ours": lambda: ops.residual_forward(r_out, r1, r2, N)}, tor, bytes=F4 * 3 * N)
    )
    if torch:
        tor = lambda: (trd1.add_(trd), trd2.add_(trd))
    out.append(
        Case("residual_backward", {"ours": lambda: ops.residual_backward(r_d1, r_d2, r_d, N)}, tor, bytes=F4 * 5 * N)
    )

    # classifier: softmax, cross-entropy, their backward, and the fused version
    logits, probs = f32(B, T, VP, scale=3.0), cp.empty((B, T, VP), cp.float32)
    targets = rng.integers(0, V, (B, T), dtype=cp.int32)
    losses, dlosses = cp.empty((B, T), cp.float32), cp.full((B, T), 1.0 / BT, cp.float32)
    dlogits = cp.zeros_like(logits)
    if torch:
        tl = tt(logits)[..., :V]
        tor = lambda: torch.softmax(tl, dim=-1)
    out.append(
        Case(
            "softmax_forward",
            {"ours": lambda: ops.softmax_forward(probs, logits, B, T, V, VP)},
            tor,
            bytes=F4 * 2 * BT * VP,
        )
    )
    ops.softmax_forward(probs, logits, B, T, V, VP)
    out.append(
        Case(
            "crossentropy_forward",
            {"ours": lambda: ops.crossentropy_forward(losses, probs, targets, B, T, VP)},
            None,
            bytes=F4 * 3 * BT,
            note="one gather per row: launch-bound",
        )
    )
    out.append(
        Case(
            "crossentropy_softmax_backward",
            {"ours": lambda: ops.crossentropy_softmax_backward(dlogits, dlosses, probs, targets, B, T, V, VP)},
            None,
            bytes=F4 * 3 * BT * VP,
        )
    )
    scratch = logits.copy()
    if torch:
        tsc, ttg = tt(scratch)[..., :V].reshape(BT, V), tt(targets).long().view(-1)

        def tor():
            x = tsc.detach().requires_grad_()
            torch.nn.functional.cross_entropy(x, ttg).backward()

    out.append(
        Case(
            "fused_classifier",
            {"ours": lambda: ops.fused_classifier(scratch, losses, None, targets, B, T, V, VP)},
            tor if torch else None,
            bytes=F4 * 3 * BT * VP,
            note="PyTorch: cross_entropy fwd+bwd (autograd)",
        )
    )

    # AdamW over all of GPT-2 124M's parameters
    P = ADAMW_PARAMS
    p, g, m, v = f32(P, scale=0.02), f32(P, scale=1e-3), f32(P, scale=1e-4), cp.abs(f32(P, scale=1e-6))
    if torch:
        tp, tg, tm, tv = tt(p), tt(g), tt(m), tt(v)
        step = torch.tensor(1.0, device="cuda")
        tor = lambda: torch._fused_adamw_(
            [tp],
            [tg],
            [tm],
            [tv],
            [],
            [step],
            lr=1e-4,
            beta1=0.9,
            beta2=0.95,
            weight_decay=0.1,
            eps=1e-8,
            amsgrad=False,
            maximize=False,
        )
    out.append(
        Case(
            "adamw_update",
            {"ours": lambda: ops.adamw_update(p, g, m, v, P, 1e-4, 0.9, 0.95, 1e-8, 0.1, 1)},
            tor,
            bytes=F4 * 7 * P,
            note="124M params; PyTorch: fused AdamW",
        )
    )
    return out


def run(repeat: int, only: set | None) -> tuple[list[str], str]:
    import cupy as cp

    from llmc_kernels import ops, speed

    torch = _torch()
    copy_gbs = speed.copy_bandwidth_gbs()
    sgemm32, sgemm_tf32 = speed.sgemm_tflops(False), speed.sgemm_tflops(True)
    lines = []
    for case in cases(cp, ops, torch):
        if only and not any(o in case.op for o in only):
            continue
        entries = list(case.ours.items()) + ([("PyTorch", case.torch)] if case.torch else [])
        base = None
        for label, fn in entries:
            try:
                ms = statistics.median(
                    speed.time_gpu(fn, repeat=repeat, graph="torch" if label == "PyTorch" else "cupy")
                )
            except Exception as e:  # noqa: BLE001 - one failure must not lose the table
                lines.append(f"| {case.op} | {label} | failed: {type(e).__name__}: {str(e)[:80]} | | | |")
                print(lines[-1], flush=True)
                continue
            graphed = " (graph)" if speed.time_gpu.last_graphed else ""
            base = ms if label != "PyTorch" and base is None else base
            cells = [case.op, label + graphed, f"{ms:.3f}"]
            cells.append(
                f"{case.bytes / ms / 1e6:.0f} ({100 * case.bytes / ms / 1e6 / copy_gbs:.0f}%)" if case.bytes else ""
            )
            cells.append(
                f"{case.flops / ms / 1e9:.1f} ({100 * case.flops / ms / 1e9 / sgemm32:.0f}%)" if case.flops else ""
            )
            cells.append(case.note if label != "PyTorch" or base is None else f"ours/PyTorch time: {base / ms:.2f}x")
            lines.append("| " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    header = (
        f"{provenance(cp, torch)}\n\n"
        f"Ceilings measured in the same run: device-to-device copy {copy_gbs:.0f} GB/s (read + write); "
        f"cuBLAS SGEMM 8192x768x3072 {sgemm32:.1f} TFLOP/s fp32, {sgemm_tf32:.1f} TFLOP/s TF32.\n"
        f"Sizes: B={B}, T={T}, C={C}, NH={NH}, V={V}, Vp={VP}; median of {repeat} launches, L2 flushed; "
        "(graph): the call was captured in a CUDA graph and its replays timed, so Python's launch and "
        "validation overhead is not counted (calls that synchronise with the host are timed directly)."
    )
    return lines, header


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--only", default="", help="comma-separated substrings of op names")
    ap.add_argument("--results", default=RESULTS)
    args = ap.parse_args(argv)
    from llmc_kernels.runtime import backend

    if backend() != "cuda":
        print("bench/kernels.py needs a CUDA GPU (the CPU backend's timings say nothing about a GPU).")
        return 2
    lines, header = run(args.repeat, {s for s in args.only.split(",") if s} or None)
    print(header)
    table = [
        "| op | implementation | median ms | GB/s (% copy) | TFLOP/s (% SGEMM fp32) | note |",
        "|---|---|---|---|---|---|",
        *lines,
    ]
    write_section(args.results, "kernels", "Kernels at GPT-2 124M sizes", header, table)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
