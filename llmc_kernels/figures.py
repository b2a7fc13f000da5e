"""The book's explanatory pictures: thread maps, collision maps, reduction trees, rooflines...

Each function draws one picture and returns a `matplotlib.figure.Figure` (no pyplot: nothing is shown and no
backend is touched). These pictures are the same on every run: they explain, they do not depend on the
learner's code. `tools/make_figures.py` saves them as SVG files in `figures/` (committed, checked for
staleness by `tools/make_figures.py --check` and the test suite), and the chapters' prose shows those files,
so they appear in the book, in Jupyter and on Colab before anything runs. Plots of the learner's own results
stay as outputs of the notebooks' cells.

To redraw one (and change it) in a notebook: `from llmc_kernels import figures; figures.roofline()`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch, Rectangle

from llmc_kernels import reference

__all__ = ["PICTURES", "Picture", "picture"]


class _Shown(Figure):
    """A Figure that a notebook shows when it is a cell's value, with or without pyplot."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize, dpi: float = 70, **kwargs):
    """`plt.subplots` without pyplot."""
    fig = _Shown(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _cmap(name: str):
    return matplotlib.colormaps[name]


def thread_map() -> Figure:
    """Chapter 00: The thread map: which thread of which block handles which element (N = 10, blocks of 4)."""
    N, block_size = 10, 4
    num_blocks = (N + block_size - 1) // block_size  # 3 blocks, 12 threads for 10 elements
    colors = ["#4C72B0", "#DD8452", "#55A868"]
    fig, ax = _subplots(figsize=(8, 2.5), dpi=70)
    for t in range(num_blocks * block_size):
        blk, tid = divmod(t, block_size)
        active = t < N
        ax.add_patch(Rectangle((t, 1.6), 0.9, 0.6, color=colors[blk], alpha=1.0 if active else 0.3))
        ax.text(t + 0.45, 1.9, str(tid), ha="center", va="center", color="white", fontsize=10)
        if active:
            ax.add_patch(Rectangle((t, 0), 0.9, 0.6, facecolor="#f2f2f2", edgecolor="black", lw=0.8))
            ax.text(t + 0.45, 0.3, str(t), ha="center", va="center", fontsize=10)
            ax.annotate("", xy=(t + 0.45, 0.65), xytext=(t + 0.45, 1.55), arrowprops=dict(arrowstyle="->", lw=0.8))
    for blk in range(num_blocks):
        ax.text(
            blk * block_size + block_size / 2 - 0.05,
            2.45,
            f"blockIdx.x = {blk}",
            ha="center",
            fontsize=10,
            color=colors[blk],
        )
    ax.text(N + 0.95, 1.05, "i = 10, 11 ≥ N:\nno element, skip", ha="center", va="center", fontsize=9, color="gray")
    ax.text(-0.3, 1.9, "threadIdx.x", ha="right", va="center", fontsize=10)
    ax.text(-0.3, 0.3, "element i", ha="right", va="center", fontsize=10)
    ax.set_title("i = blockIdx.x * blockDim.x + threadIdx.x   (N = 10, blockDim.x = 4, gridDim.x = 3)", fontsize=10)
    ax.set_xlim(-2.6, 12.6)
    ax.set_ylim(-0.2, 2.8)
    ax.axis("off")
    return fig


def encoder_collisions() -> Figure:
    """Chapter 01: The encoder backward's collisions: the threads of two toy sequences and the rows of dwte and dwpe
    they add into.
    """
    words = ["the", "cat", "sat", "on", "mat", "dog", "a", "log", "sun"]  # a toy vocabulary, V = 9
    inp_toy = np.array(
        [
            [0, 1, 2, 3, 0, 4],  # "the cat sat on the mat"
            [0, 5, 2, 3, 6, 7],
        ]
    )  # "the dog sat on a log"
    Bt, Tt = inp_toy.shape
    positions = np.tile(np.arange(Tt), (Bt, 1))
    panels = [
        ("dwte[inp[b,t], c] += dout[b,t,c]", inp_toy, [f"row {v} '{w}'" for v, w in enumerate(words)]),
        ("dwpe[t, c] += dout[b,t,c]", positions, [f"row t={t}" for t in range(Tt)]),
    ]

    fig, axes = _subplots(1, 2, figsize=(8, 3.4), dpi=70)
    for ax, (title, target, labels) in zip(axes, panels):
        counts = np.bincount(target.ravel(), minlength=len(labels))  # writers per row
        sources = [(b, t) for b in range(Bt) for t in range(Tt)]
        for k, (b, t) in enumerate(sources):
            y0, y1 = 1 - k / (len(sources) - 1), 1 - target[b, t] / (len(labels) - 1)
            ax.plot([0, 1], [y0, y1], lw=1.2, color="tab:red" if counts[target[b, t]] > 1 else "0.6")
            ax.text(-0.04, y0, f"({b},{t}) {words[inp_toy[b, t]]}", ha="right", va="center", fontsize=8)
        for r, label in enumerate(labels):
            ax.text(
                1.04,
                1 - r / (len(labels) - 1),
                f"{label}: {counts[r]}",
                ha="left",
                va="center",
                fontsize=8,
                color="tab:red" if counts[r] > 1 else "black",
            )
        ax.text(-0.04, 1.06, "(b,t) token", ha="right", fontsize=8, style="italic")
        ax.text(1.04, 1.06, "row: writers", ha="left", fontsize=8, style="italic")
        ax.set_title(title, fontsize=9, pad=22)
        ax.set_xlim(-0.8, 1.6)
        ax.axis("off")
    fig.tight_layout()
    return fig


def reduction_tree() -> Figure:
    """Chapter 02: A block's sum: the shared-memory tree with its barriers, and the warp-shuffle butterfly."""
    fig, (ax1, ax2) = _subplots(1, 2, figsize=(9.5, 3.4), dpi=70)
    n = 8  # a block of 8 threads, for the picture
    for x in range(n):
        ax1.text(x, 0, f"{x}", ha="center", va="center", fontsize=8, bbox=dict(boxstyle="round", fc="0.92", ec="0.5"))
    for k, s in enumerate([4, 2, 1], 1):  # level s: buf[tid] += buf[tid + s] for tid < s
        ax1.axhline(-k + 0.5, color="tab:red", ls="--", lw=0.8)
        ax1.text(
            n - 0.2,
            -k + 0.5,
            "__syncthreads()",
            color="tab:red",
            fontsize=8,
            va="center",
            bbox=dict(fc="white", ec="none", pad=1),
        )
        ax1.text(-0.6, -k, f"s = {s}", ha="right", va="center", fontsize=8)
        for tid in range(s):
            ax1.plot([tid + s, tid], [-(k - 1), -k], color="tab:blue", lw=1)
            ax1.plot([tid, tid], [-(k - 1), -k], color="0.6", lw=1)
            ax1.text(
                tid,
                -k,
                "Σ" if s == 1 else "+",
                ha="center",
                va="center",
                fontsize=8,
                bbox=dict(boxstyle="circle", fc="white", ec="tab:blue"),
            )
    ax1.text(0.5, -3, "buf[0]: the block's sum", fontsize=8, va="center")
    ax1.set_title("shared-memory tree (8 threads)", fontsize=9)
    ax1.set_xlim(-1.8, n + 2.8)
    ax1.set_ylim(-3.5, 0.5)
    ax1.axis("off")

    for k, off in enumerate([4, 2, 1]):  # v += __shfl_xor_sync(mask, v, off)
        for lane in range(n):
            ax2.plot([lane ^ off, lane], [-k, -(k + 1)], color="tab:green", lw=1)
            ax2.plot([lane, lane], [-k, -(k + 1)], color="0.7", lw=1)
        ax2.text(n - 0.3, -k - 0.5, f"xor {off}", fontsize=8, color="tab:green", va="center")
    for k in range(4):
        for lane in range(n):
            ax2.text(
                lane,
                -k,
                "Σ" if k == 3 else str(lane) if k == 0 else "+",
                ha="center",
                va="center",
                fontsize=8,
                bbox=dict(boxstyle="round", fc="0.92" if k == 0 else "white", ec="tab:green" if k else "0.5"),
            )
    ax2.set_title("warp shuffle butterfly (8 lanes): every lane gets the sum", fontsize=9)
    ax2.set_xlim(-0.7, n + 0.8)
    ax2.set_ylim(-3.5, 0.5)
    ax2.axis("off")
    fig.tight_layout()
    return fig


def roofline() -> Figure:
    """Chapter 03: The roofline of a T4 and an H100, with GPT-2's kernels placed by their arithmetic intensity."""
    gpus = {"T4": (8.1, 320), "H100 SXM": (67.0, 3350)}  # fp32 TFLOP/s (no tensor cores), GB/s

    def matmul_intensity(M, C, OC):
        return 2 * M * C * OC / (4 * (M * C + OC * C + M * OC))

    B_, T_, C_, NH_ = 8, 1024, 768, 12
    attention_bytes = 4 * (3 * B_ * T_ * C_ + 2 * B_ * NH_ * T_ * T_ + B_ * T_ * C_)  # inp in; preatt, att, out out
    points = {
        "GELU, LayerNorm, residual": 1.0,
        "matmul, 1 token (M = 1)": matmul_intensity(1, 768, 3072),
        "matmul, M = 64": matmul_intensity(64, 768, 3072),
        "attention with T x T matrices (ch. 04)": 2 * B_ * T_ * T_ * C_ / attention_bytes,
        "MLP fc matmul, M = 8192": matmul_intensity(8192, 768, 3072),
    }
    x = np.logspace(-1, 3, 200)
    fig, ax = _subplots(figsize=(6.8, 3.6), dpi=70)
    for (name, (peak, gbs)), style in zip(gpus.items(), ["--", "-"]):
        ax.loglog(x, np.minimum(peak, x * gbs / 1e3), style, color="black", lw=1.2)
        ridge = peak * 1e3 / gbs
        ax.text(600, peak * 1.15, f"{name}: {peak:g} TFLOP/s", ha="right", fontsize=9)
        ax.plot([ridge], [peak], "o", color="black", ms=3)
        ax.text(ridge, peak / 1.5, f"ridge {ridge:.0f}", ha="left", fontsize=8)
    peak, gbs = gpus["H100 SXM"]
    for (name, i), color in zip(points.items(), _cmap("tab10").colors):
        y = min(peak, i * gbs / 1e3)
        ax.plot([i], [y], "o", color=color, ms=7, label=f"{name}: {i:.1f} FLOP/B")
    ax.axvspan(0.1, 20, color="tab:blue", alpha=0.06)
    ax.text(0.13, 40, "memory-bound", fontsize=9, color="tab:blue")
    ax.text(40, 3, "compute-bound", fontsize=9, color="tab:red")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("attainable TFLOP/s (fp32)")
    ax.set_title("roofline: min(peak, intensity x bandwidth); points on the H100's line", fontsize=10)
    ax.set_ylim(0.02, 200)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def matmul_tiles() -> Figure:
    """Chapter 03: Tiling: the tiles of inp and weight that one block of the tiled matmul loads, step by step along
    C.
    """
    Mt, Ct, OCt = 4, 4, 3  # the matrices measured in tiles: inp 4x4, weight 3x4, out 4x3
    by, bx = 1, 2  # the block in the picture
    steps = _cmap("viridis")(np.linspace(0.15, 0.85, Ct))
    fig, axes = _subplots(1, 3, figsize=(10, 3.3), dpi=70, gridspec_kw={"width_ratios": [Ct, Ct, OCt]})
    panels = [("inp  [M, C]", Mt, Ct), ("weight  [OC, C]", OCt, Ct), ("out  [M, OC]", Mt, OCt)]
    for ax, (title, rows, cols) in zip(axes, panels):
        for r in range(rows):
            for c in range(cols):
                face, label = "white", ""
                if title.startswith("inp") and r == by:
                    face, label = steps[c], f"step {c}"
                elif title.startswith("weight") and r == bx:
                    face, label = steps[c], f"step {c}"
                elif title.startswith("out") and (r, c) == (by, bx):
                    face, label = "tab:red", "this\nblock"
                ax.add_patch(Rectangle((c, rows - 1 - r), 1, 1, facecolor=face, edgecolor="0.5", lw=0.8))
                if label:
                    ax.text(c + 0.5, rows - 0.5 - r, label, ha="center", va="center", fontsize=8, color="white")
        ax.set_xlim(-0.05, cols + 0.05)
        ax.set_ylim(-0.05, max(Mt, OCt) + 0.05)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(title, fontsize=10)
    axes[0].text(-0.2, Mt - 0.5 - by, f"rows m0..m0+15\n(blockIdx.y = {by})", ha="right", va="center", fontsize=8)
    axes[1].text(-0.2, OCt - 0.5 - bx, f"rows o0..o0+15\n(blockIdx.x = {bx})", ha="right", va="center", fontsize=8)
    fig.suptitle(
        "one block, TILE x TILE outputs: at step s it loads tile s of its inp rows and of its weight rows; "
        "out tile = sum over s of (inp tile s) (weight tile s)^T",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def attention_pattern() -> Figure:
    """Chapter 04: The causal attention pattern of two heads on 8 positions (the float64 reference)."""
    Bp, Tp, Cp, NHp = 1, 8, 8, 2
    inp_p = 1.5 * np.random.default_rng(4).standard_normal((Bp, Tp, 3 * Cp))
    out_p, pre_p, att_p = np.empty((Bp, Tp, Cp)), np.empty((Bp, NHp, Tp, Tp)), np.empty((Bp, NHp, Tp, Tp))
    reference.attention_forward(out_p, pre_p, att_p, inp_p, Bp, Tp, Cp, NHp)

    cmap = _cmap("Blues").with_extremes(bad="0.85")  # masked entries in grey
    fig, axes = _subplots(1, NHp, figsize=(7.2, 3.3), dpi=70)
    for h, ax in enumerate(axes):
        a = np.where(np.tri(Tp, dtype=bool), att_p[0, h], np.nan)
        im = ax.imshow(a, cmap=cmap, vmin=0, vmax=1)
        for t in range(Tp):
            for t2 in range(t + 1):
                ax.text(
                    t2,
                    t,
                    f"{a[t, t2]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if a[t, t2] > 0.6 else "black",
                )
        ax.set_title(f"att, head {h}", fontsize=10)
        ax.set_xlabel("key position t2")
        ax.set_ylabel("query position t")
        ax.set_xticks(range(Tp))
        ax.set_yticks(range(Tp))
    fig.colorbar(im, ax=axes, shrink=0.8)
    return fig


def attention_backward_map() -> Figure:
    """Chapter 04: Who writes what in the attention backward: one thread per row, atomics down the columns."""
    Tm, t_row, t_col = 8, 5, 2
    fig, ax = _subplots(figsize=(7, 4), dpi=70)
    for t in range(Tm):
        for t2 in range(Tm):
            if t2 > t:
                face = "0.85"  # masked: never read or written
            elif t == t_row:
                face = "tab:orange"
            elif t2 == t_col:
                face = "tab:green"
            else:
                face = "white"
            ax.add_patch(Rectangle((t2, Tm - 1 - t), 1, 1, facecolor=face, edgecolor="0.5", lw=0.6))
    ax.add_patch(Rectangle((t_col, Tm - 1 - t_row), 1, 1, facecolor="tab:olive", edgecolor="0.5", lw=0.6))
    ax.text(
        Tm + 0.3,
        Tm - 0.5 - t_row,
        f"row t = {t_row}: one thread writes it:\ndatt, dpreatt, dq[t]  (plain +=)",
        va="center",
        fontsize=9,
        color="tab:orange",
    )
    ax.text(
        t_col + 0.5,
        -0.4,
        f"column t2 = {t_col}: the {Tm - t_col} threads of rows t >= {t_col}\nadd into dk[t2] and dv[t2]  (atomicAdd)",
        ha="left",
        va="top",
        fontsize=9,
        color="tab:green",
    )
    for i in range(Tm):
        ax.text(i + 0.5, Tm + 0.2, str(i), ha="center", fontsize=8)
        ax.text(-0.2, Tm - 0.5 - i, str(i), ha="right", va="center", fontsize=8)
    ax.text(Tm / 2, Tm + 0.8, "key position t2", ha="center", fontsize=9)
    ax.text(-0.9, Tm / 2, "query position t", rotation=90, ha="right", va="center", fontsize=9)
    ax.set_xlim(-1.6, Tm + 6.5)
    ax.set_ylim(-2.2, Tm + 1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("dpreatt of one (b, h): who writes what (grey: masked, t2 > t)", fontsize=10)
    return fig


def coalescing() -> Figure:
    """Chapter 04b: Coalescing: the floats a warp's 32 lanes ask for and the 32-byte sectors moved, for strides 1,
    2 and 8.
    """
    # Memory drawn as 128-byte lines (rows of 32 floats), each split into four 32-byte sectors.
    patterns = {"stride 1: inp[lane]": 1, "stride 2: inp[2 * lane]": 2, "stride 8 or more: inp[8 * lane]": 8}
    fig, axes = _subplots(1, 3, figsize=(11, 3.3), dpi=70)
    for ax, (title, stride) in zip(axes, patterns.items()):
        elements = [lane * stride for lane in range(32)]  # the float each lane asks for
        sectors = {e // 8 for e in elements}  # 8 floats = 32 bytes per sector
        for line in range(8):  # 8 lines = 1 KiB drawn
            for s in range(4):
                touched = line * 4 + s in sectors
                ax.add_patch(
                    Rectangle(
                        (s * 8, line),
                        8,
                        1,
                        fc="tab:orange" if touched else "0.96",
                        ec="0.4",
                        lw=0.6,
                        alpha=0.55 if touched else 1,
                    )
                )
        for e in elements:  # the 4 bytes each lane uses
            ax.add_patch(Rectangle((e % 32 + 0.15, e // 32 + 0.2), 0.7, 0.6, fc="tab:blue", ec="none"))
        for lane in (0, 1, 31):
            e = elements[lane]
            ax.text(e % 32 + 0.5, e // 32 + 0.5, str(lane), color="white", fontsize=6, ha="center", va="center")
        ax.set_xlim(0, 32)
        ax.set_ylim(8, 0)
        ax.set_xticks([0, 8, 16, 24, 32])
        ax.set_yticks(range(0, 9, 2))
        ax.set_xlabel("float within a 128-byte line", fontsize=8)
        ax.set_ylabel("line", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{title}\n{len(sectors)} sectors moved for 128 bytes used", fontsize=9)
    fig.tight_layout()
    return fig


def bank_conflicts() -> Figure:
    """Chapter 04b: Shared-memory banks: a warp reading a column of a 32 x 32 tile, without padding (one bank,
    32-way conflict) and with one float of padding per row (32 banks).
    """
    fig, axes = _subplots(1, 2, figsize=(9.5, 3.6), dpi=70)
    col = 5  # the column the warp reads: lane l reads tile[l][col]
    for ax, width in zip(axes, (32, 33)):
        banks = [(lane * width + col) % 32 for lane in range(32)]  # word l * width + col, bank word % 32
        ways = max(banks.count(b) for b in set(banks))
        for lane, bank in enumerate(banks):
            ax.plot([0, 1], [lane, bank], color="tab:red" if ways > 1 else "tab:green", lw=0.7, alpha=0.8)
        ax.scatter([0] * 32, range(32), s=6, color="tab:blue")
        ax.scatter([1] * 32, range(32), s=6, color="0.4")
        ax.set_xticks([0, 1], ["lane", "bank"])
        ax.set_yticks([0, 8, 16, 24, 31])
        ax.invert_yaxis()
        ax.set_title(
            f"float tile[32][{width}], lane l reads tile[l][{col}]:\n"
            f"{len(set(banks))} bank(s): "
            + (f"{ways}-way conflict, {ways} wavefronts" if ways > 1 else "no conflict, 1 wavefront"),
            fontsize=9,
        )
    fig.tight_layout()
    return fig


def gelu_curves() -> Figure:
    """Chapter 05: GELU and its derivative next to ReLU, with finite differences on the derivative."""
    s, k = np.sqrt(2 / np.pi), 0.044715
    x = np.linspace(-4, 4, 401)
    t = np.tanh(s * (x + k * x**3))
    gelu = 0.5 * x * (1 + t)
    dgelu = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * s * (1 + 3 * k * x**2)
    xd = np.linspace(-3.5, 3.5, 15)
    f = lambda z: 0.5 * z * (1 + np.tanh(s * (z + k * z**3)))
    h = 1e-4
    fd = (f(xd + h) - f(xd - h)) / (2 * h)

    fig, (ax1, ax2) = _subplots(1, 2, figsize=(9, 3), dpi=70)
    ax1.plot(x, np.maximum(x, 0), color="gray", ls="--", label="ReLU")
    ax1.plot(x, gelu, color="C0", lw=2, label="GELU (tanh approx.)")
    ax1.set_title("forward")
    ax2.plot(x, (x > 0).astype(float), color="gray", ls="--", label="ReLU'")
    ax2.plot(x, dgelu, color="C1", lw=2, label="GELU'")
    ax2.plot(xd, fd, "o", color="black", ms=4, label="finite differences")
    ax2.set_title("derivative")
    for ax in (ax1, ax2):
        ax.axhline(0, color="black", lw=0.5)
        ax.axvline(0, color="black", lw=0.5)
        ax.set_xlabel("x")
        ax.legend(fontsize=9, loc="upper left")
    fig.tight_layout()
    return fig


def grid_stride_loop() -> Figure:
    """Chapter 05: A grid-stride loop: a fixed grid of threads walking over a longer array."""
    N, blocks, threads = 20, 2, 4
    S = blocks * threads
    cmap = _cmap("tab10")
    fig, ax = _subplots(figsize=(10, 2.2), dpi=70)
    for i in range(N):
        g = i % S  # the thread (global index) that handles element i
        ax.add_patch(Rectangle((i, 0), 0.92, 0.8, color=cmap(g), alpha=0.85))
        ax.text(i + 0.46, 0.4, str(i), ha="center", va="center", color="white", fontsize=9)
        ax.text(i + 0.46, -0.45, f"b{g // threads}\nt{g % threads}", ha="center", va="center", fontsize=8)
    for p in range((N + S - 1) // S):
        ax.text(p * S + min(S, N - p * S) / 2, 1.05, f"pass {p}: i = g + {p}·S", ha="center", fontsize=9)
        ax.axvline(p * S - 0.04, color="black", lw=0.8)
    ax.text(-0.4, 0.4, "element", ha="right", va="center", fontsize=9)
    ax.text(-0.4, -0.45, "block, thread", ha="right", va="center", fontsize=9)
    ax.set_title(f"grid-stride loop: {blocks} blocks x {threads} threads, stride S = {S}, N = {N}", fontsize=10)
    ax.set_xlim(-3.2, N + 0.2)
    ax.set_ylim(-0.9, 1.4)
    ax.axis("off")
    return fig


def residual_graph() -> Figure:
    """Chapter 06: The residual connection, forward (black) and backward (red): the gradient is copied to both
    inputs.
    """
    fig, ax = _subplots(figsize=(9, 3.6), dpi=70)
    red = "#c0392b"

    def box(xc, yc, text, color="#dde8f5", w=1.5, h=0.6):
        ax.add_patch(
            FancyBboxPatch((xc - w / 2, yc - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="black", lw=0.8)
        )
        ax.text(xc, yc, text, ha="center", va="center", fontsize=10)

    def arrow(x0, y0, x1, y1, color="black", **kw):
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(arrowstyle="-|>", color=color, lw=1.3, shrinkA=0, shrinkB=0, **kw),
        )

    box(0.0, 0.0, "x", color="#f4f4f4", w=0.9)
    box(2.3, 1.7, "ln1")
    box(4.7, 1.7, "attention\n(qkv, attproj)", w=2.1, h=0.8)
    ax.add_patch(Circle((7.2, 0.0), 0.3, fc="#fde5c8", ec="black", lw=0.8))
    ax.text(7.2, 0.0, "+", ha="center", va="center", fontsize=14)
    box(9.0, 0.0, "r = x + branch", color="#f4f4f4", w=1.9)

    # forward, in black
    arrow(0.5, 0.08, 6.9, 0.08)
    ax.text(3.6, 0.2, "skip (inp1)", ha="center", fontsize=9)
    arrow(0.25, 0.35, 1.5, 1.45)
    arrow(3.1, 1.7, 3.6, 1.7)
    arrow(5.75, 1.55, 7.0, 0.25)
    ax.text(6.55, 1.05, "branch (inp2)", ha="left", fontsize=9)
    arrow(7.5, 0.0, 8.0, 0.0)

    # backward, in red (dashed): dr arrives at the sum and is copied to both inputs
    arrow(8.0, -0.3, 7.45, -0.2, color=red)
    ax.text(7.95, -0.5, "dr", color=red, ha="center", fontsize=10)
    arrow(6.9, -0.1, 0.5, -0.1, color=red, ls="--")
    ax.text(3.6, -0.45, "residual_backward: dx += dr   (copied, unchanged)", color=red, ha="center", fontsize=9)
    arrow(7.25, 0.35, 6.05, 1.6, color=red, ls="--")
    ax.text(7.5, 1.35, "residual_backward:\nd(branch) += dr", color=red, ha="left", fontsize=9)
    arrow(1.6, 1.2, 0.45, 0.35, color=red, ls="--")
    ax.text(-1.2, 1.35, "layernorm_backward:\ndx += branch's share", color=red, ha="left", fontsize=9)

    ax.text(
        -1.2,
        -1.15,
        "x is used twice, so its gradient is the sum of both paths: the caller zeroes dx once per "
        "step,\nand each backward kernel adds (+=) its share.",
        ha="left",
        fontsize=9,
    )
    ax.set_xlim(-1.3, 10.2)
    ax.set_ylim(-1.5, 2.3)
    ax.axis("off")
    return fig


def softmax_temperature() -> Figure:
    """Chapter 07: Logits and their softmax at three temperatures."""
    tokens = [" the", " a", " to", " and", " of", " in", " is", " it"]
    scores = np.array([4.0, 3.2, 2.5, 2.4, 1.0, 0.6, -0.5, -1.5])

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    fig, (ax1, ax2) = _subplots(1, 2, figsize=(10, 2.8), dpi=70, gridspec_kw={"width_ratios": [1, 1.6]})
    ax1.bar(range(8), scores, color="0.55")
    ax1.set_title("logits z (scores)", fontsize=10)
    w = 0.27
    for k, (tau, color) in enumerate([(0.5, "tab:red"), (1.0, "tab:blue"), (2.0, "tab:green")]):
        ax2.bar(np.arange(8) + (k - 1) * w, softmax(scores / tau), width=w, color=color, label=f"τ = {tau}")
    ax2.set_title("softmax(z / τ): probabilities", fontsize=10)
    ax2.legend(fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xticks(range(8))
        ax.set_xticklabels(tokens, fontsize=9)
        ax.axhline(0, color="black", lw=0.5)
    fig.tight_layout()
    return fig


def online_softmax() -> Figure:
    """Chapter 07: The online softmax on one row of ten logits: the running maximum and the rescaled running sum."""
    x = np.array([1.0, 0.5, 2.0, 1.5, 3.5, 0.0, 3.0, 5.0, 4.0, 2.5])
    m, s, ms, ss, jumps = -np.inf, 0.0, [], [], []
    for k, xk in enumerate(x):
        if xk > m:
            s = s * np.exp(m - xk) + 1.0  # rescale the old terms to the new maximum
            m = xk
            jumps.append(k)
        else:
            s += np.exp(xk - m)
        ms.append(m)
        ss.append(s)

    fig, (ax1, ax2) = _subplots(2, 1, figsize=(8, 4), dpi=70, sharex=True)
    ax1.bar(range(10), x, color="0.75", label="logit $z_k$")
    ax1.step(range(10), ms, where="mid", color="tab:red", lw=2, label="running max $m_k$")
    ax1.legend(fontsize=9, loc="upper left")
    ax2.plot(range(10), ss, "o-", color="tab:blue", label=r"running sum $s_k = \sum_{j \leq k} e^{z_j - m_k}$")
    ax2.plot(
        jumps[1:],
        [ss[k] for k in jumps[1:]],
        "o",
        ms=10,
        mfc="none",
        mec="tab:red",
        label="max jumped: old terms times $e^{m_{old} - m_{new}}$",
    )
    ax2.legend(fontsize=8, loc="lower right")
    ax2.set_xlabel("element k")
    ax2.set_xticks(range(10))
    fig.tight_layout()
    return fig


def adam_vs_sgd() -> Figure:
    """Chapter 08: 40 steps of SGD and of Adam on an ill-conditioned quadratic."""
    curv = np.array([1.0, 100.0])  # f = 0.5 * (x^2 + 100 y^2)
    grad = lambda p: curv * p
    start, steps = np.array([-4.0, 1.0]), 40

    sgd = [start.copy()]
    for _ in range(steps):
        sgd.append(sgd[-1] - 0.019 * grad(sgd[-1]))

    p, m, v = start.copy(), np.zeros(2), np.zeros(2)
    adam = [p.copy()]
    for t in range(1, steps + 1):
        reference.adamw_update(p, grad(p), m, v, 2, 0.15, 0.9, 0.999, 1e-8, 0.0, t)
        adam.append(p.copy())

    X, Y = np.meshgrid(np.linspace(-4.5, 1.5, 200), np.linspace(-1.3, 1.3, 120))
    fig, ax = _subplots(figsize=(8, 3.2), dpi=70)
    ax.contour(X, Y, 0.5 * (X**2 + 100 * Y**2), levels=[0.1, 0.5, 1, 2, 4, 8, 16, 32, 64], colors="0.8", linewidths=0.8)
    for path, color, label in [
        (np.array(sgd), "tab:orange", "SGD, lr = 0.019"),
        (np.array(adam), "tab:blue", "Adam, lr = 0.15"),
    ]:
        ax.plot(
            path[:, 0],
            path[:, 1],
            "o-",
            ms=3,
            lw=1,
            color=color,
            label=f"{label}: ends at ({path[-1, 0]:.2f}, {path[-1, 1]:.2f})",
        )
    ax.plot(0, 0, "k*", ms=10)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=9, loc="lower right")
    ax.set_title("40 steps on f(x, y) = (x² + 100 y²) / 2", fontsize=10)
    fig.tight_layout()
    return fig


def adam_bias_correction() -> Figure:
    """Chapter 08: Adam's bias correction for a constant gradient: the raw and corrected moments, and the step size."""
    b1, b2 = 0.9, 0.999
    t = np.arange(1, 3001)
    m_t = 1 - b1**t  # constant gradient g = 1, from m = v = 0
    v_t = 1 - b2**t

    fig, (ax1, ax2) = _subplots(1, 2, figsize=(10, 3), dpi=70)
    ax1.semilogx(t, m_t, color="tab:blue", label="m (raw)")
    ax1.semilogx(t, np.sqrt(v_t), color="tab:orange", label="√v (raw)")
    ax1.semilogx(t, m_t / (1 - b1**t), color="tab:blue", ls="--", label="m̂ and √v̂ (corrected) = g")
    ax1.set_title("moments for a constant gradient g = 1", fontsize=10)
    ax1.set_ylim(0, 1.1)
    ax2.semilogx(t, m_t / np.sqrt(v_t), color="tab:red", label="without correction: m / √v")
    ax2.semilogx(t, (m_t / (1 - b1**t)) / np.sqrt(v_t / (1 - b2**t)), color="tab:green", label="with: m̂ / √v̂")
    ax2.set_title("step size in units of lr", fontsize=10)
    ax2.set_ylim(0, 7)
    for ax in (ax1, ax2):
        ax.set_xlabel("step t")
        ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def gpt2_diagram() -> Figure:
    """Chapter 09: GPT-2 as the course's ops: the model (left) and one transformer block (right), with the buffers
    between them.
    """
    fig, ax = _subplots(figsize=(9.6, 8.2), dpi=70)
    colors = {
        "encoder": "#f6d6ad",
        "layernorm": "#cfe3f7",
        "matmul": "#d9ead3",
        "attention": "#f4cccc",
        "gelu": "#e6d5f0",
        "residual": "#fff2b3",
        "loss": "#e0e0e0",
    }

    def op_box(x, y, text, kind, w=2.3, h=0.46):
        ax.add_patch(
            FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04", fc=colors[kind], ec="black", lw=0.8)
        )
        ax.text(x, y, text, ha="center", va="center", fontsize=9.5)

    def down(x, y0, y1, label=""):
        ax.annotate(
            "",
            xy=(x, y1),
            xytext=(x, y0),
            arrowprops=dict(arrowstyle="-|>", color="black", lw=1.1, shrinkA=0, shrinkB=0),
        )
        if label:
            ax.text(x + 0.12, (y0 + y1) / 2, label, ha="left", va="center", fontsize=8.5, family="monospace")

    # the model (left)
    X = 1.6
    ax.text(X, 10.05, "inp [B,T] (token ids)", ha="center", fontsize=9, family="monospace")
    op_box(X, 9.6, "encoder\nwte[Vp,C], wpe[maxT,C]", "encoder", h=0.62)
    down(X, 9.27, 8.5, "encoded [B,T,C]")
    ax.add_patch(
        FancyBboxPatch((X - 1.15, 7.0), 2.3, 1.45, boxstyle="round,pad=0.04", fc="#fafafa", ec="black", lw=1.2, ls="--")
    )
    ax.text(X, 7.72, "transformer block\n\nx L  (12 in d12)\none block: right", ha="center", va="center", fontsize=9.5)
    down(X, 6.95, 6.22, "residual3[L-1] [B,T,C]")
    op_box(X, 5.97, "layernorm (lnfw, lnfb)", "layernorm")
    down(X, 5.72, 5.03, "lnf [B,T,C]")
    op_box(X, 4.7, "matmul: lnf @ wte^T\n(weight tying, no bias)", "matmul", h=0.62)
    down(X, 4.37, 3.72, "logits [B,T,Vp]")
    op_box(X, 3.47, "softmax", "loss")
    down(X, 3.22, 2.57, "probs [B,T,Vp]")
    op_box(X, 2.32, "crossentropy (targets [B,T])", "loss")
    down(X, 2.07, 1.45, "losses [B,T]")
    ax.text(X, 1.2, "mean over B*T -> loss", ha="center", fontsize=9.5)

    # one block (right)
    R, top = 6.6, 10.05
    ax.text(
        R,
        top + 0.25,
        "x [B,T,C]  (encoded, or the block below's residual3)",
        ha="center",
        fontsize=8.5,
        family="monospace",
    )
    steps = [
        ("layernorm ln1 (ln1w, ln1b)", "layernorm", "ln1 [B,T,C]; ln1_mean, ln1_rstd [B,T]"),
        ("matmul qkv (qkvw[3C,C], qkvb)", "matmul", "qkv [B,T,3C]"),
        ("attention (NH heads, causal)", "attention", "atty [B,T,C]; preatt, att [B,NH,T,T]"),
        ("matmul attproj (attprojw[C,C])", "matmul", "attproj [B,T,C]"),
        ("residual: x + attproj", "residual", "residual2 [B,T,C]"),
        ("layernorm ln2 (ln2w, ln2b)", "layernorm", "ln2 [B,T,C]; ln2_mean, ln2_rstd [B,T]"),
        ("matmul fc (fcw[4C,C], fcb)", "matmul", "fch [B,T,4C]"),
        ("gelu", "gelu", "fch_gelu [B,T,4C]"),
        ("matmul fcproj (fcprojw[C,4C])", "matmul", "fcproj [B,T,C]"),
        ("residual: residual2 + fcproj", "residual", "residual3 [B,T,C]  (the block's output)"),
    ]
    ypos = [top - 0.45 - i * 0.86 for i in range(len(steps))]
    down(R, top + 0.1, ypos[0] + 0.23)
    for i, (text, kind, out) in enumerate(steps):
        op_box(R, ypos[i], text, kind, w=3.0)
        down(R, ypos[i] - 0.23, ypos[i + 1] + 0.23 if i + 1 < len(steps) else ypos[i] - 0.7, out)
    skip = "#b45f06"
    for src, dst in ((top + 0.02, ypos[4]), (ypos[4] - 0.45, ypos[9])):  # the two skip connections
        ax.plot([R - 0.02, R - 1.85, R - 1.85], [src, src, dst], color=skip, lw=1.3)
        ax.annotate(
            "",
            xy=(R - 1.5, dst),
            xytext=(R - 1.85, dst),
            arrowprops=dict(arrowstyle="-|>", color=skip, lw=1.3, shrinkA=0, shrinkB=0),
        )
        ax.text(R - 1.95, (src + dst) / 2, "skip", rotation=90, color=skip, ha="right", va="center", fontsize=9)
    ax.plot([X + 1.22, R - 2.3], [7.72, 7.72], color="grey", lw=0.8, ls=":")
    ax.set_xlim(-0.2, 10.3)
    ax.set_ylim(1.0, 10.5)
    ax.axis("off")
    ax.set_title("GPT-2 as llm.c computes it: ops (boxes) and the tensors between them", fontsize=11)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Picture:
    name: str  # the file's stem: figures/<name>.svg
    chapter: str  # the notebook whose prose shows it (solutions/<chapter>.ipynb)
    draw: Callable[[], Figure]
    alt: str  # the image's alternative text in the notebook


PICTURES: tuple[Picture, ...] = (
    Picture(
        "thread_map",
        "00_first_kernel",
        thread_map,
        "The thread map: which thread of which block handles which element (N = 10, blocks of 4).",
    ),
    Picture(
        "encoder_collisions",
        "01_encoder",
        encoder_collisions,
        (
            "The encoder backward's collisions: the threads of two toy sequences and the rows of dwte and dwpe "
            "they add into."
        ),
    ),
    Picture(
        "reduction_tree",
        "02_layernorm",
        reduction_tree,
        "A block's sum: the shared-memory tree with its barriers, and the warp-shuffle butterfly.",
    ),
    Picture(
        "roofline",
        "03_matmul",
        roofline,
        "The roofline of a T4 and an H100, with GPT-2's kernels placed by their arithmetic intensity.",
    ),
    Picture(
        "matmul_tiles",
        "03_matmul",
        matmul_tiles,
        "Tiling: the tiles of inp and weight that one block of the tiled matmul loads, step by step along C.",
    ),
    Picture(
        "attention_pattern",
        "04_attention",
        attention_pattern,
        "The causal attention pattern of two heads on 8 positions (the float64 reference).",
    ),
    Picture(
        "attention_backward_map",
        "04_attention",
        attention_backward_map,
        "Who writes what in the attention backward: one thread per row, atomics down the columns.",
    ),
    Picture(
        "coalescing",
        "04b_where_the_time_goes",
        coalescing,
        (
            "Coalescing: the floats the 32 lanes of a warp ask for (blue) and the 32-byte sectors moved to deliver "
            "them (orange), for strides of 1, 2 and 8 floats."
        ),
    ),
    Picture(
        "bank_conflicts",
        "04b_where_the_time_goes",
        bank_conflicts,
        (
            "Shared-memory banks: the 32 lanes of a warp reading a column of a 32 x 32 float tile all hit one bank "
            "(a 32-way conflict); with rows padded to 33 floats they hit 32 different banks."
        ),
    ),
    Picture(
        "gelu_curves",
        "05_gelu",
        gelu_curves,
        "GELU and its derivative next to ReLU, with finite differences on the derivative.",
    ),
    Picture(
        "grid_stride_loop",
        "05_gelu",
        grid_stride_loop,
        "A grid-stride loop: a fixed grid of threads walking over a longer array.",
    ),
    Picture(
        "residual_graph",
        "06_residual",
        residual_graph,
        "The residual connection, forward (black) and backward (red): the gradient is copied to both inputs.",
    ),
    Picture(
        "softmax_temperature",
        "07_softmax_crossentropy",
        softmax_temperature,
        "Logits and their softmax at three temperatures.",
    ),
    Picture(
        "online_softmax",
        "07_softmax_crossentropy",
        online_softmax,
        "The online softmax on one row of ten logits: the running maximum and the rescaled running sum.",
    ),
    Picture("adam_vs_sgd", "08_adamw", adam_vs_sgd, "40 steps of SGD and of Adam on an ill-conditioned quadratic."),
    Picture(
        "adam_bias_correction",
        "08_adamw",
        adam_bias_correction,
        "Adam's bias correction for a constant gradient: the raw and corrected moments, and the step size.",
    ),
    Picture(
        "gpt2_diagram",
        "09_gpt2_model",
        gpt2_diagram,
        (
            "GPT-2 as the course's ops: the model (left) and one transformer block (right), with the buffers "
            "between them."
        ),
    ),
)


def picture(name: str) -> Picture:
    for p in PICTURES:
        if p.name == name:
            return p
    raise KeyError(f"no picture named {name!r}: {', '.join(p.name for p in PICTURES)}")
