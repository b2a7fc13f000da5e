"""Flash attention (kernels/flash_attention.cu), each design and precision, at GPT-2 sizes, against PyTorch.

    python bench/flash_attention.py [--sizes 8x1024,8x256] [--variants v1,v2,simt] [--tune] [--repeat 20]
                                    [--results bench/RESULTS.md]

For every precision (TF32: ``precise=False``, the fast engine's default; fp32: 3xTF32, ``--precision fp32``),
size (B x T; NH=12, hs=64, C=768: GPT-2 124M) and variant (``v1``: FA_VERSION 1, the first kernels; ``v2``:
FA_VERSION 2 with the wrapper's tuning; ``simt``: kernels/flash_attention_simt.cu, the sm_75 path, fp32 FMA,
in the fp32 rows only; ``--tune`` adds version 2 with other tuning macros, named by what they change), the
forward and the backward (the delta pre-pass included, as ``ops.flash_attention_backward`` runs
them) are timed with CUDA events: the median of ``--repeat`` replays of a CUDA graph of the call, after a
warm-up, L2 flushed before each (``llmc_kernels.speed.time_gpu``). Before timing, each variant's out, lse and
dinp are compared with v1's on the same inputs (max abs difference, printed and in the table).

FLOPs counted (causal, the products only): forward 4 B NH T^2 hs / 2 (S = Q K^T and O = P V over the lower
triangle), backward 2.5 times that (S recomputed, dP = dO V^T, dV = P^T dO, dK = dS^T Q, dQ = dS K). At B=8,
T=1024: 12.9 GFLOP forward, 32.2 GFLOP backward.

PyTorch (when importable): ``scaled_dot_product_attention(q, k, v, is_causal=True)`` on the same q, k, v
(strided views of the same qkv), fp32 with TF32 disallowed ("fp32") and allowed ("tf32"), whatever backend
it picks for float32; its backward is ``torch.autograd.grad`` of that output for the same dout (retained graph).
The table is printed and written into the results file with the device, date and commit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _results import RESULTS, provenance, write_section  # noqa: E402

NH, HS = 12, 64
C = NH * HS

# Version 2 tuning variants timed by --tune: name -> {precise: macros overriding the wrapper's TUNING}. The
# diagnostic row leaves dQ out (its max |diff| is large on purpose): what the dQ atomics cost.
TUNE = {
    "v2 fwd 8 warps (128 rows), 128 regs": {False: {"FA_FWD_WARPS": 8, "FA_FWD_MINB": 2}},
    "v2 fwd unbounded regs": {False: {"FA_FWD_MINB": 1}, True: {"FA_FWD_MINB": 1}},
    "v2 fwd 2 m-tiles/warp, 32-key tiles": {False: {"FA_FWD_WM": 2, "FA_FWD_BK": 32, "FA_FWD_MINB": 1}},
    "v2 bwd 168 regs (3 blocks/SM)": {False: {"FA_BWD_MINB": 3}},
    "v2 bwd dQ in two accumulator sets": {False: {"FA_BWD_DQ2": 1}, True: {"FA_BWD_DQ2": 1}},
    "diagnostic: bwd without dQ atomics (dQ wrong)": {False: {"FA_BWD_NODQ": 1}, True: {"FA_BWD_NODQ": 1}},
}


def flops(B: int, T: int) -> tuple[float, float]:
    fwd = 4 * B * NH * T * T * HS / 2
    return fwd, 2.5 * fwd


def _torch():
    try:
        import torch

        return torch if torch.cuda.is_available() else None
    except ImportError:
        return None


class Variant:
    """A setting of ops.flash_attention's VERSION and TUNING, applied around each call."""

    def __init__(self, name: str, version: int, tuning: dict | None = None):
        self.name, self.version, self.tuning = name, version, tuning or {}

    def applies(self, precise: bool) -> bool:
        if self.version is None:  # the SIMT kernels: fp32 only
            return precise
        return self.version == 1 or not self.tuning or precise in self.tuning

    def __enter__(self):
        from llmc_kernels.ops import flash_attention as fa

        self._saved = (fa.VERSION, {k: dict(v) for k, v in fa.TUNING.items()})
        fa.VERSION = self.version or fa.VERSION
        for precise, macros in self.tuning.items():
            fa.TUNING[precise].update(macros)
        return self

    def __exit__(self, *exc):
        from llmc_kernels.ops import flash_attention as fa

        fa.VERSION, fa.TUNING = self._saved[0], self._saved[1]


def variants(names: list[str], tune: bool) -> list[Variant]:
    out = [Variant(n, {"v1": 1, "v2": 2, "simt": None}[n]) for n in names]
    if tune:
        out += [Variant(name, 2, tuning) for name, tuning in TUNE.items()]
    return out


def measure(ops, speed, cp, a: dict, B: int, T: int, precise: bool, repeat: int, simt: bool = False):
    """One variant (already applied): its out, lse and dinp (from zero) on the inputs ``a``, then the median
    forward and backward times in ms."""
    out, lse, dinp = a["out"], a["lse"], a["dinp"]
    out.fill(cp.nan)
    lse.fill(cp.nan)
    dinp.fill(0)

    def fwd():
        ops.flash_attention_forward(out, lse, a["inp"], B, T, C, NH, precise=precise, simt=simt)

    def bwd():
        ops.flash_attention_backward(
            dinp, a["dout"], a["inp"], out, lse, B, T, C, NH, delta=a["delta"], precise=precise, simt=simt
        )

    fwd()
    bwd()
    got = (out.copy(), lse.copy(), dinp.copy())
    ms_f = statistics.median(speed.time_gpu(fwd, repeat=repeat, graph="cupy"))
    ms_b = statistics.median(speed.time_gpu(bwd, repeat=repeat, graph="cupy"))
    return got, ms_f, ms_b


def run(sizes, names, tune, repeat):
    import cupy as cp

    from llmc_kernels import ops, speed

    torch = _torch()
    rows, t_start = [], time.time()
    for B, T in sizes:
        rng = cp.random.default_rng(B * 10000 + T)
        a = {
            "inp": rng.standard_normal((B, T, 3 * C), dtype=cp.float32),
            "dout": rng.standard_normal((B, T, C), dtype=cp.float32),
            "out": cp.empty((B, T, C), cp.float32),
            "lse": cp.empty((B, NH, T), cp.float32),
            "dinp": cp.zeros((B, T, 3 * C), cp.float32),
            "delta": cp.empty((B, NH, T), cp.float32),
        }
        f_fwd, f_bwd = flops(B, T)
        for precise in (False, True):
            label = "tf32" if not precise else "fp32 (3xTF32)"
            ref = None
            for v in variants(names, tune):
                if not v.applies(precise):
                    continue
                with v:
                    got, ms_f, ms_b = measure(ops, speed, cp, a, B, T, precise, repeat, simt=v.version is None)
                ref = got if ref is None else ref
                diff = max(float(cp.max(cp.abs(x - r))) for x, r in zip(got, ref))
                finite = all(bool(cp.isfinite(x).all()) for x in got)
                rows.append((f"{B}x{T}", label, v.name, ms_f, ms_b, f_fwd, f_bwd, diff if finite else float("nan")))
                print(_row(rows[-1], rows), flush=True)
            if torch:
                for r in _torch_rows(torch, a["inp"], a["dout"], B, T, precise, repeat, speed):
                    rows.append((f"{B}x{T}", label, *r, f_fwd, f_bwd, None))
                    print(_row(rows[-1], rows), flush=True)
    return rows, torch, time.time() - t_start


def _torch_rows(torch, inp, dout, B, T, precise, repeat, speed):
    """PyTorch's SDPA on the same q, k, v: fp32 (TF32 off) for the precise rows, TF32 allowed for the TF32 rows."""
    F = torch.nn.functional
    qkv = torch.from_dlpack(inp).view(B, T, 3, NH, HS).permute(2, 0, 3, 1, 4)
    q, k, v = (x.detach().requires_grad_() for x in qkv)
    do = torch.from_dlpack(dout).view(B, T, NH, HS).transpose(1, 2)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = not precise
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        ms_f = statistics.median(
            speed.time_gpu(
                lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), repeat=repeat, graph="torch"
            )
        )
        ms_b = statistics.median(
            speed.time_gpu(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True), repeat=repeat)
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    yield (f"PyTorch SDPA ({'TF32 allowed' if tf32 else 'fp32'})", ms_f, ms_b)


def _row(r, rows) -> str:
    size, label, name, ms_f, ms_b, f_fwd, f_bwd, diff = r
    base = next((x for x in rows if x[0] == size and x[1] == label and x[2] == "v1"), None)
    speedup = f"{base[3] / ms_f:.2f}x / {base[4] / ms_b:.2f}x" if base and name != "v1" else ""
    d = "" if diff is None else f"{diff:.1e}"
    return (
        f"| {size} | {label} | {name} | {1e3 * ms_f:.0f} | {f_fwd / ms_f / 1e9:.1f} | {1e3 * ms_b:.0f} | "
        f"{f_bwd / ms_b / 1e9:.1f} | {speedup} | {d} |"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="8x1024,8x256", help="comma-separated BxT (NH=12, hs=64)")
    ap.add_argument("--variants", default="v1,v2,simt", help="comma-separated: v1, v2, simt")
    ap.add_argument("--tune", action="store_true", help="also time version 2 with other tuning macros")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--results", default=RESULTS, help="results file ('' to write nothing)")
    args = ap.parse_args(argv)
    from llmc_kernels.runtime import backend

    if backend() != "cuda":
        print("bench/flash_attention.py needs a CUDA GPU (the CPU backend's timings say nothing about a GPU).")
        return 2
    import cupy as cp

    sizes = [tuple(int(x) for x in s.lower().split("x")) for s in args.sizes.split(",") if s]
    names = [n for n in args.variants.split(",") if n in ("v1", "v2", "simt")]
    rows, torch, seconds = run(sizes, names, args.tune, args.repeat)
    header = (
        f"{provenance(cp, torch)}\n\n"
        f"NH={NH}, hs={HS}, causal; median of {args.repeat} CUDA-graph replays, L2 flushed (PyTorch's backward "
        "timed without a graph); backward = delta pre-pass + backward kernel. FLOPs: forward 4 B NH T^2 hs / 2, "
        "backward 2.5x that. speedup = v1 time / this time (forward / backward); max |diff| = largest "
        f"difference of out, lse, dinp from v1's on the same inputs. Whole run {seconds:.0f} s."
    )
    print(header)
    table = [
        "| B x T | precision | kernels | forward us | TFLOP/s | backward us | TFLOP/s | speedup fwd / bwd "
        "| max abs diff vs v1 |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(r, rows) for r in rows),
    ]
    if args.results:
        write_section(args.results, "flash", "Flash attention, kernel by kernel", header, table)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
