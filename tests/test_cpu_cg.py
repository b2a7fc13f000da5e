"""Cooperative groups on the CPU backend (include/llmc_cg.h): what each query returns, how tiles synchronise
and what is refused. Collectives over real data (reduce, scans, shuffles, votes) are in the corpus
(tests/corpus/cg_*.cu); every kernel here is also compiled by NVRTC where it and CUDA's headers are there.
"""

from __future__ import annotations

import numpy as np
import pytest

from llmc_kernels.errors import KernelCompileError, KernelDeadlock
from llmc_kernels.runtime import RawKernel, launch_options, nvrtc

HEAD = "#include <cooperative_groups.h>\n#include <cooperative_groups/reduce.h>\nnamespace cg = cooperative_groups;\n"


def valid_cuda(code: str, name: str) -> None:
    if nvrtc.available() and nvrtc.header_dirs():
        nvrtc.check_compile(code, name)


QUERIES = (
    HEAD
    + r"""
extern "C" __global__ void queries(int* out) {
    cg::thread_block block = cg::this_thread_block();
    cg::thread_block_tile<32> warp = cg::tiled_partition<32>(block);
    cg::thread_block_tile<4> quad = cg::tiled_partition<4>(block);
    cg::thread_group group = cg::tiled_partition(block, 16);
    cg::grid_group grid = cg::this_grid();
    int* o = out + 16 * grid.thread_rank();
    o[0] = block.thread_rank();
    o[1] = block.size() * 1000 + block.num_threads();
    o[2] = block.group_index().x * 100 + block.group_index().y;
    o[3] = block.thread_index().x * 100 + block.thread_index().y * 10 + block.thread_index().z;
    o[4] = block.dim_threads().x * 100 + block.dim_threads().y * 10 + block.dim_threads().z;
    o[5] = warp.thread_rank() * 1000 + warp.meta_group_rank() * 10 + warp.meta_group_size();
    o[6] = quad.thread_rank() * 1000 + quad.meta_group_rank() * 10 + quad.num_threads();
    o[7] = quad.meta_group_size();
    o[8] = (int)group.thread_rank() * 100 + (int)group.size();
    o[9] = (int)grid.block_rank() * 100 + (int)grid.num_blocks();
    o[10] = (int)grid.size();
    o[11] = grid.is_valid();
    block.sync();
    cg::sync(block);
    warp.sync();
    quad.sync();
    group.sync();
}
"""
)


@pytest.mark.parametrize("schedule", ["forward", "reverse"])
def test_groups_answer_as_cuda_defines_them(schedule):
    valid_cuda(QUERIES, "queries")
    grid, block = (2, 3), (8, 4, 2)  # 64 threads per block, 6 blocks
    out = np.zeros((6, 64, 16), np.int32)
    with launch_options(schedule=schedule):
        RawKernel(QUERIES, "queries", backend="cpu")(grid, block, (out.reshape(-1),))
    z, y, x = np.meshgrid(range(2), range(4), range(8), indexing="ij")
    rank = (x + 8 * (y + 4 * z)).reshape(-1)  # x fastest, as the threads of a block are numbered
    assert (out[..., 0] == rank).all()
    assert (out[..., 1] == 64064).all()
    assert [out[b, 0, 2] for b in range(6)] == [0, 100, 1, 101, 2, 102]  # blocks in grid-rank order
    assert (out[0, :, 3] == (x * 100 + y * 10 + z).reshape(-1)).all()
    assert (out[..., 4] == 842).all()
    assert (out[0, :, 5] == (rank % 32) * 1000 + (rank // 32) * 10 + 2).all()
    assert (out[0, :, 6] == (rank % 4) * 1000 + (rank // 4) * 10 + 4).all() and (out[..., 7] == 16).all()
    assert (out[0, :, 8] == (rank % 16) * 100 + 16).all()
    assert (out[..., 9] == np.arange(6)[:, None] * 100 + 6).all() and (out[..., 10] == 384).all()
    assert (out[..., 11] == 0).all()  # a grid group is valid only in a cooperative launch


SUBTILES = (
    HEAD
    + r"""
extern "C" __global__ void subtiles(int* out) {
    auto warp = cg::tiled_partition<32>(cg::this_thread_block());
    auto half = cg::tiled_partition<16>(warp);          // a tile of a tile
    cg::thread_block_tile<16> copy = half;               // converts to the parent-less type
    int t = threadIdx.x;
    out[3 * t] = half.meta_group_rank() * 10 + half.meta_group_size();
    out[3 * t + 1] = cg::reduce(copy, t, cg::less<int>());
    out[3 * t + 2] = cg::reduce(warp, t % 7, [](int a, int b) { return a > b ? a : b; });
}
"""
)


def test_tiles_split_from_tiles_and_reductions_with_any_operation():
    valid_cuda(SUBTILES, "subtiles")
    out = np.zeros((64, 3), np.int32)
    RawKernel(SUBTILES, "subtiles", backend="cpu")((1,), (64,), (out.reshape(-1),))
    t = np.arange(64)
    assert (out[:, 0] == ((t % 32) // 16) * 10 + 2).all()
    assert (out[:, 1] == t - t % 16).all()
    assert (out[:, 2] == 6).all()


def test_grid_wide_sync_is_refused_when_compiling():
    code = (
        HEAD
        + r"""
extern "C" __global__ void k(float* out) {
    cg::grid_group grid = cg::this_grid();
    out[grid.thread_rank()] = 1.0f;
    grid.sync();                                        // <- here
}
"""
    )
    with pytest.raises(KernelCompileError) as info:
        RawKernel(code, "k", backend="cpu").compile()
    msg = str(info.value)
    assert info.value.kernel_line == code.split("\n").index(next(l for l in code.split("\n") if "<- here" in l)) + 1
    assert "grid-wide synchronisation is not supported by the CPU backend" in msg
    assert "split the kernel in two launches" in msg
    with pytest.raises(KernelCompileError, match="cg::sync\\(grid\\): grid-wide synchronisation is not supported"):
        RawKernel(code.replace("grid.sync();", "cg::sync(grid);"), "k", backend="cpu").compile()


def test_a_tile_of_a_partial_warp_is_reported_at_the_learners_line():
    code = (
        HEAD
        + r"""
extern "C" __global__ void k(float* out) {
    cg::thread_block_tile<32> warp = cg::tiled_partition<32>(cg::this_thread_block());
    float v = cg::reduce(warp, 1.0f, cg::plus<float>());   // <- here
    out[threadIdx.x] = v;
}
"""
    )
    with pytest.raises(KernelDeadlock) as info:
        RawKernel(code, "k", backend="cpu")((1,), (48,), (np.zeros(48, np.float32),))
    assert info.value.kernel_line == 7
    assert "warp 1 has only 16 lanes" in str(info.value)


def test_unsupported_tile_sizes_say_so():
    code = (
        HEAD
        + r"""
extern "C" __global__ void k(int* out) {
    cg::thread_group g = cg::tiled_partition(cg::this_thread_block(), 12);
    out[threadIdx.x] = g.thread_rank();
}
"""
    )
    with pytest.raises(Exception, match="tiles of 1, 2, 4, 8, 16 or 32 threads"):
        RawKernel(code, "k", backend="cpu")((1,), (48,), (np.zeros(48, np.int32),))
    with pytest.raises(KernelCompileError, match="tiles of 1, 2, 4, 8, 16 or 32 threads"):
        RawKernel(
            code.replace(
                "cg::thread_group g = cg::tiled_partition(cg::this_thread_block(), 12);",
                "auto g = cg::tiled_partition<64>(cg::this_thread_block());",
            ),
            "k",
            backend="cpu",
        ).compile()
