"""Flash attention: causal multi-head attention that never materialises the T x T matrices
(``kernels/flash_attention.cu``; the math and the tensor-core layout are explained there).

    flash_attention_forward(out[B,T,C], lse[B,NH,T], inp[B,T,3C], B, T, C, NH)
        out = softmax(causal(q k^T / sqrt(hs))) v per head (as attention_forward's ``out``); written.
        lse = the softmax's log-sum-exp per row, in base-2 units of the scaled scores (for the backward).
    flash_attention_backward(dinp[B,T,3C], dout[B,T,C], inp, out, lse, B, T, C, NH, delta=None)
        dinp += d(out)/d(inp) applied to dout (as attention_backward's ``dinp``; accumulates).
        ``delta`` [B,NH,T] is scratch (allocated when None; the model passes its own so nothing is
        allocated inside a CUDA graph).

Compared with ``attention_forward`` (llm.c's layout), nothing of size B*NH*T*T exists: GPT-2 small at
B=8, T=1024 saves 2 x 4.8 GB of att/preatt activations and the same again of backward scratch, and the
scores make one trip through registers instead of four through memory.

Precision: the products run on TF32 tensor cores. ``precise=True`` (default when the matmul precision is
"fp32", and on the cpu backend) uses 3xTF32, accurate like fp32 FMA; ``precise=False`` (``"tf32"``) plain
TF32 (~1e-3 relative). Head sizes up to 64 (GPT-2 uses 64 at every size); hs is padded to a multiple of 8.

Launch: forward grid (ceil(T/rows), B*NH), 32 * FA_FWD_WARPS threads, rows = 16 * FA_FWD_WM * FA_FWD_WARPS
(128 threads and 64 rows in version 1); backward grid (ceil(T/64), B*NH), 128 threads; the delta
pre-pass a warp per (b, t, h) on cuda, a thread per row on cpu. On the cpu backend the same kernels run
with the tensor-core instruction emulated from its fragments (``FA_EMULATE_MMA``), so the tests there
check every index the GPU uses.

The sm_75 path (``simt=True``; by default on a GPU of compute capability < 8.0, which has no TF32 mma, and
wherever ``LLMC_FORCE_SM75=1``: ops/arch.py) runs ``kernels/flash_attention_simt.cu`` instead: the same
math and the same lse, in fp32 FMA (``precise`` does not apply: always fp32-accurate), two lanes per row,
the backward as a dQ pass (which also writes ``delta``) and a dK/dV pass, no atomics. Same arguments, same
contract; grids (ceil(T/64), B*NH) of 128 threads.
"""

from __future__ import annotations

import math

import numpy as np

from . import _loader, _validate
from ._grid import aligned16, resident_blocks

MAX_HEAD = 64
THREADS = 128
ROWS = 64  # keys per backward block (and query rows per forward block in version 1)
# kernels/flash_attention.cu's FA_VERSION: 2, pipelined (cp.async, 8-byte fragment reads); 1, the first kernels,
# kept for bench/flash_attention.py. Version 2's tuning macros per precision (True: 3xTF32), from that bench.
VERSION = 2
TUNING = {
    False: {"FA_FWD_WARPS": 4, "FA_FWD_WM": 1, "FA_FWD_MINB": 4, "FA_BWD_MINB": 1},
    True: {"FA_FWD_WARPS": 4, "FA_FWD_WM": 1, "FA_FWD_MINB": 3, "FA_BWD_MINB": 1},
}
DELTA_BLOCK = 256
SIMT_THREADS = 128
SIMT_ROWS = 64  # the SIMT kernels: rows per block, two lanes each
MAX_GRID_Y = 65535


def head_pad(hs: int) -> int:
    """The head size the kernels are compiled for: hs rounded up to a multiple of 8 (the mma's k)."""
    return -(-int(hs) // 8) * 8


def _precise(backend: str, precise) -> bool:
    if precise is not None:
        return bool(precise)
    if backend != "cuda":
        return True
    from .matmul import matmul_precision

    return matmul_precision() != "tf32"


def _forward_block(precise: bool) -> tuple[int, int]:
    """(query rows, threads) of a tensor-core forward block."""
    if VERSION < 2:
        return ROWS, THREADS
    t = TUNING[precise]
    return 16 * t["FA_FWD_WM"] * t["FA_FWD_WARPS"], 32 * t["FA_FWD_WARPS"]


def _simt(backend: str, simt) -> bool:
    """Whether this call runs the SIMT kernels: ``simt`` if given, else arch.simt_path (read per call)."""
    if simt is not None:
        return bool(simt)
    from .arch import simt_path

    return simt_path(backend)


def _simt_kernel(name: str, hs: int):
    return _loader.kernel("flash_attention_simt.cu", name, options=(f"-DFA_HS={head_pad(hs)}",))


def _kernel(name: str, hs: int, precise: bool, emulate: bool = False):
    options = (f"-DFA_HS={head_pad(hs)}", f"-DFA_PRECISE={int(precise)}", f"-DFA_VERSION={VERSION}")
    if VERSION >= 2:
        options += tuple(f"-D{k}={v}" for k, v in sorted(TUNING[precise].items()))
    if emulate:
        options += ("-DFA_EMULATE_MMA=1",)
    return _loader.kernel("flash_attention.cu", name, options=options)


def _check_sizes(fn: str, B, T, C, NH) -> int:
    """The kernels' own limits, beyond the signature (opspec.EXTENSIONS, checked by _validate)."""
    hs = C // NH
    if hs > MAX_HEAD:
        raise ValueError(
            f"{fn}: head size C/NH = {hs} is larger than the {MAX_HEAD} these kernels hold in "
            "shared memory; use attention_forward/attention_backward"
        )
    if B * NH > MAX_GRID_Y:
        raise ValueError(f"{fn}: B*NH = {B * NH} blocks along grid y is more than CUDA's {MAX_GRID_Y}")
    return hs


def _vec(hs: int, C: int, *arrays) -> np.int32:
    """float4 tile loads: every head slice of every row 16-byte aligned."""
    return np.int32(hs % 4 == 0 and C % 4 == 0 and aligned16(*arrays))


def flash_attention_forward(out, lse, inp, B, T, C, NH, *, precise=None, emulate=False, simt=None):
    """out = causal softmax(q k^T / sqrt(hs)) v per head; lse saved for the backward (both written).
    ``simt``: True/False picks the SIMT or the tensor-core kernels; None, the machine's path (arch.simt_path)."""
    fn = "flash_attention_forward"
    backend, _ = _validate.arguments(fn, locals())
    hs = _check_sizes(fn, B, T, C, NH)
    scale_log2 = math.log2(math.e) / math.sqrt(hs)
    args = (out, lse, inp, np.int32(B), np.int32(T), np.int32(C), np.int32(NH), np.float32(scale_log2))
    if _simt(backend, simt):
        kernel = _simt_kernel("flash_attention_simt_forward_kernel", hs)
        kernel((-(-T // SIMT_ROWS), B * NH), (SIMT_THREADS,), args + (_vec(hs, C, inp),))
        return
    precise = _precise(backend, precise)
    rows, threads = _forward_block(precise)
    kernel = _kernel("flash_attention_forward_kernel", hs, precise, emulate)
    kernel((-(-T // rows), B * NH), (threads,), args + (_vec(hs, C, inp),))


def flash_attention_backward(
    dinp, dout, inp, out, lse, B, T, C, NH, *, delta=None, precise=None, emulate=False, simt=None
):
    """dinp += the gradient of the attention for upstream dout (needs the forward's out and lse).
    ``simt`` as in flash_attention_forward (either backward reads either forward's out and lse)."""
    fn = "flash_attention_backward"
    backend, _ = _validate.arguments(fn, locals())
    hs = _check_sizes(fn, B, T, C, NH)
    if delta is None:
        xp = np if backend == "cpu" else __import__("cupy")
        delta = xp.empty((B, NH, T), dtype=np.float32)
    scale = 1.0 / math.sqrt(hs)
    sizes = (np.int32(B), np.int32(T), np.int32(C), np.int32(NH))
    if _simt(backend, simt):
        # dQ first: it writes delta, which the dK/dV pass reads (same stream, so in order)
        grid = (-(-T // SIMT_ROWS), B * NH)
        scales = (np.float32(scale * math.log2(math.e)), np.float32(scale))
        _simt_kernel("flash_attention_simt_backward_dq_kernel", hs)(
            grid, (SIMT_THREADS,), (dinp, delta, dout, inp, out, lse, *sizes, *scales, _vec(hs, C, inp, dout, out))
        )
        _simt_kernel("flash_attention_simt_backward_kernel", hs)(
            grid, (SIMT_THREADS,), (dinp, dout, inp, lse, delta, *sizes, *scales, _vec(hs, C, inp, dout))
        )
        return
    precise = _precise(backend, precise)
    rows = B * T * NH
    lanes, block = (32, DELTA_BLOCK) if backend == "cuda" else (1, 32)
    grid = max(1, min(-(-rows * lanes // block), resident_blocks(backend, block) * 4))
    _kernel("flash_attention_delta_kernel", hs, precise, emulate)(
        (grid,), (block,), (delta, out, dout, np.int32(B), np.int32(T), np.int32(C), np.int32(NH), np.int32(lanes))
    )
    _kernel("flash_attention_backward_kernel", hs, precise, emulate)(
        (-(-T // ROWS), B * NH),
        (THREADS,),
        (
            dinp,
            dout,
            inp,
            lse,
            delta,
            np.int32(B),
            np.int32(T),
            np.int32(C),
            np.int32(NH),
            np.float32(scale * math.log2(math.e)),
            np.float32(scale),
            _vec(hs, C, inp, dout),
        ),
    )
