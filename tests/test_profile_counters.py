"""The memory counters' definitions on hand-made access events (no kernel): the analytic cases of Nsight
Compute's metrics (a coalesced float copy is 4 sectors per request, stride 32 is 32, float4 is 16; shared
``buf[tid]`` is 1 wavefront, ``buf[2*tid]`` 2, ``buf[32*tid]`` 32, ``buf[0]`` 1)."""
import numpy as np
import pytest

from llmc_kernels.profiling import EVENT, count
from llmc_kernels.profiling.counters import ATOMIC, GLOBAL, LOAD, SHARED, STORE
from llmc_kernels.profiling.report import hints, render

BASE = 1 << 20          # a global array's address: 1 MiB, sector- and line-aligned


def events(rows):
    """rows: (thread, addr, size, space, kind[, site, occ, block])"""
    ev = np.zeros(len(rows), dtype=EVENT)
    for i, r in enumerate(rows):
        thread, addr, size, space, kind = r[:5]
        site, occ, block = (list(r[5:]) + [0, 0, 0])[:3] if len(r) > 5 else (0, 0, 0)
        ev[i] = (addr, block, thread, site, occ, 0, size, space, kind, 0)
    return ev


def warp_access(index, size=4, space=GLOBAL, kind=LOAD, lanes=range(32), site=0, base=BASE):
    return [(t, base + index(t) * size, size, space, kind, site) for t in lanes]


def counters(rows, **kw):
    return count(events(rows), name="k", grid=(1, 1, 1), block=(32, 1, 1), **kw)


@pytest.mark.parametrize("stride, sectors", [(1, 4), (2, 8), (4, 16), (8, 32), (16, 32), (32, 32)])
def test_strided_float_loads(stride, sectors):
    k = counters(warp_access(lambda t: t * stride))
    assert (k.global_load_requests, k.global_load_sectors) == (1, sectors)
    assert k.global_load_ideal == 4 and k.bytes_requested == 128 and k.unique_bytes == 128


def test_float4_copy_is_16_sectors_per_request():
    k = counters(warp_access(lambda t: t, size=16) + warp_access(lambda t: t, size=16, kind=STORE, site=1,
                                                                  base=BASE * 4))
    assert (k.global_load_requests, k.global_load_sectors) == (1, 16)
    assert (k.global_store_requests, k.global_store_sectors) == (1, 16)
    assert k.unique_bytes == 2 * 512


def test_broadcast_load_is_one_sector():
    k = counters(warp_access(lambda t: 0))
    assert (k.global_load_requests, k.global_load_sectors, k.global_load_ideal) == (1, 1, 1)
    assert k.bytes_requested == 128 and k.unique_bytes == 4


@pytest.mark.parametrize("stride, wavefronts", [(0, 1), (1, 1), (2, 2), (3, 1), (4, 4), (8, 8), (16, 16),
                                                (32, 32), (33, 1)])
def test_shared_strides(stride, wavefronts):
    k = counters(warp_access(lambda t: t * stride, space=SHARED, base=0))
    assert (k.shared_load_requests, k.shared_load_wavefronts) == (1, wavefronts)
    assert k.shared_load_ideal == 1 and k.unique_bytes == 0 and k.bytes_requested == 0


def test_wide_shared_accesses_are_served_in_phases():
    k = counters(warp_access(lambda t: t, size=16, space=SHARED, base=0))        # float4 buf[tid]
    assert (k.shared_load_wavefronts, k.shared_load_ideal) == (4, 4)
    k = counters(warp_access(lambda t: t, size=8, space=SHARED, base=0, kind=STORE))   # float2
    assert (k.shared_store_requests, k.shared_store_wavefronts, k.shared_store_ideal) == (1, 2, 2)
    k = counters(warp_access(lambda t: 8 * t, size=16, space=SHARED, base=0))    # 128 bytes apart: 8-way
    assert k.shared_load_wavefronts == 4 * 8


def test_requests_are_per_warp_site_and_occurrence():
    rows = []
    for occ in range(3):                                   # a loop: three requests of 32 lanes
        rows += [(t, BASE + 4 * (t + 32 * occ), 4, GLOBAL, LOAD, 0, occ) for t in range(32)]
    rows += [(t, BASE + 4 * t, 4, GLOBAL, STORE, 1, 0) for t in range(32, 40)]   # a second, partial warp
    k = count(events(rows), name="k", grid=(1, 1, 1), block=(40, 1, 1))
    assert (k.global_load_requests, k.global_load_sectors) == (3, 12)
    assert (k.global_store_requests, k.global_store_sectors) == (1, 1)


def test_divergent_branches_are_requests_of_their_own():
    rows = warp_access(lambda t: t, lanes=range(16), site=0) + warp_access(lambda t: t, lanes=range(16, 32), site=1)
    k = counters(rows)
    assert (k.global_load_requests, k.global_load_sectors) == (2, 4)


def test_blocks_never_share_a_request():
    rows = [(t, BASE + 4 * t, 4, GLOBAL, LOAD, 0, 0, b) for b in range(2) for t in range(32)]
    k = count(events(rows), name="k", grid=(2, 1, 1), block=(32, 1, 1))
    assert (k.global_load_requests, k.global_load_sectors, k.unique_bytes) == (2, 8, 128)


def test_atomics_and_unaligned_straddles():
    k = counters(warp_access(lambda t: 0, kind=ATOMIC))
    assert k.atomics == 1 and k.global_load_requests == 0
    k = counters([(0, BASE + 30, 4, GLOBAL, LOAD)])       # a 4-byte access across a sector boundary
    assert k.global_load_sectors == 2


def test_hints_name_the_stride_and_the_fix():
    k = counters(warp_access(lambda t: 768 * t), site_lines={0: 12}, regions={0: "inp"})
    text = " ".join(hints(k))
    assert "line 12" in text and "768 elements" in text and "threadIdx.x" in text and "inp" in text
    k = counters(warp_access(lambda t: 32 * t, space=SHARED, base=0), site_lines={0: 7})
    assert "32-way bank conflict" in " ".join(hints(k))
    clean = counters(warp_access(lambda t: t))
    assert hints(clean) == []
    table = render([clean], minimum=128)
    assert "1.00x the minimum" in table and "4.0 (4.0)" in table
