"""llmc_kernels.speed, the chapters' "how fast is it" tables: each candidate is timed the way its kernels can
be seen. A PyTorch candidate is captured with PyTorch's graph API on PyTorch's stream (a CuPy capture would
record none of its kernels and time an empty graph: 0.002 ms for attention on an H100, 2026-12-07); on a GPU
its time is that of real work."""

from __future__ import annotations

import statistics

import pytest

from llmc_kernels import speed


def test_each_candidate_is_timed_through_the_graph_api_of_its_library(monkeypatch, capsys):
    graphs = []
    monkeypatch.setattr("llmc_kernels.runtime.backend", lambda: "cuda")
    monkeypatch.setattr(speed, "time_gpu", lambda fn, repeat, graph: graphs.append(graph) or [1.0])
    table = speed.how_fast({"ours": lambda: None, "PyTorch": speed.torch_call(lambda: None)})
    assert graphs == ["cupy", "torch"]
    assert [r.name for r in table.rows] == ["ours", "PyTorch"] and "PyTorch" in capsys.readouterr().out


@pytest.mark.gpu
def test_a_pytorch_candidate_times_its_kernels_on_the_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch without CUDA")
    a = torch.randn(4096, 4096, device="cuda")

    def product():
        return a @ a

    ms = statistics.median(speed.time_gpu(speed.torch_call(product), repeat=5, graph="torch"))
    # 137 GFLOP: at most ~1,000 TFLOP/s on any GPU this course meets, so no less than 0.1 ms of real work
    assert ms > 0.1, ms
