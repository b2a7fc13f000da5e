"""What a failing check says: tensor, errors against the tolerance, counts, the first bad index by name, and a
hint for each recognisable pattern. The "kernels" here are float32 NumPy functions (tests/mutants/numpy_ops.py)
made wrong on purpose, so these run without the CPU backend; tests/test_check_mutations.py does the same with
CUDA C kernels."""

from __future__ import annotations

import re

import numpy as np
import pytest
from mutants import numpy_ops as n

from llmc_kernels import check, runtime
from llmc_kernels.errors import CheckFailed, KernelDeadlock, KernelOutOfBounds


@pytest.fixture(autouse=True)
def cpu_backend(monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "cpu")


def failure(capsys, run) -> str:
    """Run a check that must fail; return its message (also checks it was printed, exactly once)."""
    with pytest.raises(CheckFailed) as info:
        run()
    out = capsys.readouterr().out
    msg = str(info.value)
    assert msg.startswith("FAIL ")
    assert out.strip() == msg.strip()
    return msg


# ------------------------------------------------------------------------------------------ report contents
def test_failure_names_tensor_errors_counts_and_first_bad_index(capsys):
    def wrong(out, mean, rstd, inp, weight, bias, B, T, C):
        n.layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C)
        out[1, 3, 17] += 0.5

    msg = failure(capsys, lambda: check.forward("layernorm", wrong, sizes={"B": 2, "T": 5, "C": 20}))
    assert "FAIL layernorm_forward: wrong results for B=2, T=5, C=20" in msg
    assert "out: 1 of 200 elements off" in msg
    assert re.search(
        r"max abs error 5\.0e-01, max rel error [0-9.e+-]+; tolerance [0-9.e+-]+ \+ 1e-04\*\|expected\|", msg
    )
    assert "first bad at b=1, t=3, c=17" in msg
    assert "mean:" not in msg and "rstd:" not in msg  # only the wrong tensors are listed
    assert "thread order 'forward'" in msg


def test_attention_index_says_q_k_or_v_and_head(capsys):
    def wrong(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH):
        n.attention_backward(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH)
        dinp[0, 2, C + 5] += 1.0  # k of head 1 (hs = 4), channel 1

    msg = failure(capsys, lambda: check.backward("attention", wrong, sizes={"B": 1, "T": 3, "C": 8, "NH": 2}))
    assert "first bad at b=0, t=2, c=13 (k of head 1, i=1)" in msg


def test_unwritten_tail_is_counted_and_blamed_on_the_grid(capsys):
    def first_block_only(out, a, b, N):
        out[:256] = (a + b)[:256]

    msg = failure(capsys, lambda: check.forward("vector_add", first_block_only))
    assert "744 never written (still NaN)" in msg
    assert "only the first 256 elements (a whole number of blocks) are right" in msg
    assert "from i=256 on were never written" in msg
    assert "ceil_div" in msg


def test_missing_last_partial_block(capsys):
    def floor_grid(out, a, b, N):
        done = (N // 128) * 128
        out[:done] = (a + b)[:done]

    msg = failure(capsys, lambda: check.forward("vector_add", floor_grid))
    assert "only the first 896 elements (a whole number of blocks) are right" in msg
    assert "partial block" in msg


def test_rows_past_the_first_block_unwritten(capsys):
    def rows32(out, mean, rstd, inp, weight, bias, B, T, C):
        o, m, r = (np.full_like(x, np.nan) for x in (out, mean, rstd))
        n.layernorm_forward(o, m, r, inp, weight, bias, B, T, C)
        out.reshape(-1, C)[:32] = o.reshape(-1, C)[:32]
        mean.reshape(-1)[:32] = m.reshape(-1)[:32]
        rstd.reshape(-1)[:32] = r.reshape(-1)[:32]

    msg = failure(capsys, lambda: check.forward("layernorm", rows32))
    assert "only the first 32 rows (a whole number of blocks) are right" in msg
    assert "from b=0, t=32, c=0 on were never written" in msg


def test_scattered_unwritten_elements(capsys):
    def every_other(out, a, b, N):
        out[::2] = (a + b)[::2]

    msg = failure(capsys, lambda: check.forward("vector_add", every_other))
    assert "500 never written (still NaN)" in msg
    assert "were never written (still NaN): is every element assigned" in msg


# ------------------------------------------------------------------------------------------ accumulation
def test_overwrite_instead_of_accumulate(capsys):
    def overwrite(dinp1, dinp2, dout, N):
        dinp1[:] = dout
        dinp2[:] = dout

    msg = failure(capsys, lambda: check.backward("residual", overwrite))
    assert "dinp1:" in msg and "dinp2:" in msg
    assert "overwritten (=) instead of accumulated (+=)" in msg


def test_gradient_added_twice(capsys):
    def twice(dinp, inp, dout, N):
        n.gelu_backward(dinp, inp, dout, N)
        n.gelu_backward(dinp, inp, dout, N)

    msg = failure(capsys, lambda: check.backward("gelu", twice))
    assert "exactly doubled: added twice?" in msg


def test_gradient_never_added(capsys):
    def no_wpe(dwte, dwpe, dout, inp, B, T, C):
        n.encoder_backward(dwte, dwpe.copy(), dout, inp, B, T, C)

    msg = failure(capsys, lambda: check.backward("encoder", no_wpe))
    assert "dwpe:" in msg and "dwte:" not in msg
    assert "still holds its previous values where it should have changed: nothing was added" in msg


def test_adamw_not_updating_m_says_so(capsys):
    def frozen_m(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t):
        n.adamw_update(params, grads, m.copy(), v, num_params, lr, beta1, beta2, eps, weight_decay, t)

    msg = failure(capsys, lambda: check.forward("adamw", frozen_m))
    assert "m: " in msg and "it was not updated" in msg


# ------------------------------------------------------------------------------------------ factors, NaN, races
def test_constant_factor(capsys):
    def no_half(out, inp, N):
        n.gelu_forward(out, inp, N)
        out *= 2

    msg = failure(capsys, lambda: check.forward("gelu", no_half))
    assert "off by a constant factor: doubled the expected values" in msg


def test_constant_factor_not_two(capsys):
    def scaled(out, inp, weight, bias, B, T, C, OC):
        n.matmul_forward(out, inp, weight, bias, B, T, C, OC)
        out *= np.float32(0.37)

    msg = failure(capsys, lambda: check.forward("matmul", scaled, sizes={"B": 2, "T": 3, "C": 5, "OC": 7}))
    assert "off by a constant factor: 0.37 x the expected values" in msg


def test_nan_on_large_inputs_suggests_subtracting_the_max(capsys):
    def no_max(probs, logits, B, T, V, Vp):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(logits[..., :V])
            probs[..., :V] = e / e.sum(-1, keepdims=True)
        probs[..., V:] = 0

    msg = failure(capsys, lambda: check.forward("softmax", no_max))
    assert "(inputs of large magnitude)" in msg
    assert "NaN/inf computed" in msg
    assert "subtract the row's maximum before exp" in msg


def test_nan_on_ordinary_inputs(capsys):
    def divides_by_zero(out, inp, N):
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:] = inp / (inp - inp)

    msg = failure(capsys, lambda: check.forward("gelu", divides_by_zero))
    assert "computed NaN/inf where the result is finite" in msg


def test_result_depending_on_thread_order_is_called_a_race(capsys):
    def racy(out, inp, N):
        n.gelu_forward(out, inp, N)
        if runtime.current_launch_options().schedule == "forward":
            out[N // 2] = 0.0

    msg = failure(capsys, lambda: check.forward("gelu", racy))
    assert "thread order 'forward' failed, 'reverse' passed" in msg
    assert "__syncthreads()" in msg


def test_both_orders_wrong_differently_is_a_race(capsys):
    def racy(out, inp, N):
        n.gelu_forward(out, inp, N)
        out[0 if runtime.current_launch_options().schedule == "forward" else N - 1] = 7.0

    msg = failure(capsys, lambda: check.forward("gelu", racy, sizes={"N": 100}))
    assert "the thread orders give different results" in msg


# ------------------------------------------------------------------------------------------ regions
def test_att_must_be_zero_above_the_diagonal(capsys):
    def unmasked(out, preatt, att, inp, B, T, C, NH):
        n.attention_forward(out, preatt, att, inp, B, T, C, NH)
        att[:, :, ~np.tri(T, dtype=bool)] = 0.25

    msg = failure(capsys, lambda: check.forward("attention", unmasked))
    assert "att:" in msg and "out:" not in msg
    assert "att must be exactly 0 where t2 > t" in msg


def test_masked_dpreatt_must_keep_its_values(capsys):
    def clobbers(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH):
        n.attention_backward(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH)
        dpreatt[:, :, ~np.tri(T, dtype=bool)] = 0.0

    msg = failure(capsys, lambda: check.backward("attention", clobbers))
    assert "dpreatt changed where t2 > t" in msg


def test_padded_probs_must_be_zero(capsys):
    def leaves_padding(probs, logits, B, T, V, Vp):
        n.softmax_forward(probs, logits, B, T, V, Vp)
        probs[..., V:] = np.nan

    msg = failure(capsys, lambda: check.forward("softmax", leaves_padding))
    assert "must be 0 in the padded columns v >= V" in msg


def test_padded_dlogits_must_keep_their_values(capsys):
    def zeroes_padding(dlogits, dlosses, probs, targets, B, T, V, Vp):
        n.crossentropy_softmax_backward(dlogits, dlosses, probs, targets, B, T, V, Vp)
        dlogits[..., V:] = 0.0

    msg = failure(capsys, lambda: check.backward("crossentropy", zeroes_padding))
    assert "dlogits changed in the padded columns v >= V" in msg


def test_preatt_above_the_diagonal_is_not_compared(capsys):
    def writes_minus_inf(out, preatt, att, inp, B, T, C, NH):
        n.attention_forward(out, preatt, att, inp, B, T, C, NH)
        preatt[:, :, ~np.tri(T, dtype=bool)] = -np.inf

    check.forward("attention", writes_minus_inf)
    assert capsys.readouterr().out == "PASS attention_forward\n"


# ------------------------------------------------------------------------------------------ errors from kernels
def test_kernel_error_becomes_a_failed_check_with_its_message(capsys):
    err = KernelOutOfBounds("write out of bounds: out[1000] (size 1000)", kernel="add", buffer="out", index=1000)

    def oob(out, a, b, N):
        raise err

    with pytest.raises(CheckFailed) as info:
        check.forward("vector_add", oob)
    msg = str(info.value)
    assert info.value.__cause__ is err
    assert "your kernel raised an error for N=1000 (case 1 of 4, thread order 'forward')" in msg
    assert "KernelOutOfBounds: kernel 'add': write out of bounds: out[1000] (size 1000)" in msg
    assert "missing bounds check" in msg and "if (i < N)" in msg
    assert "FAIL vector_add" in capsys.readouterr().out


def test_deadlock_hint(capsys):
    def stuck(out, a, b, N):
        raise KernelDeadlock("__syncthreads() reached by 31 of 32 threads", kernel="add")

    msg = failure(capsys, lambda: check.forward("vector_add", stuck))
    assert "KernelDeadlock" in msg and "every thread of a block must reach each __syncthreads()" in msg


def test_changing_an_input_fails(capsys):
    def scribbles(out, a, b, N):
        out[:] = a + b
        b[3] = 0.0

    msg = failure(capsys, lambda: check.forward("vector_add", scribbles))
    assert "changed its input 'b'" in msg and "first at i=3" in msg


def test_fd_case_says_where_expected_values_come_from(capsys):
    def wrong_tiny(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C):
        n.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C)
        if B * T * C == 10:
            dbias += 1.0

    msg = failure(capsys, lambda: check.backward("layernorm", wrong_tiny))
    assert "(finite differences)" in msg
    assert "expected values are finite differences of the float64 reference forward" in msg


def test_returning_the_result_instead_of_writing_it(capsys):
    def returns(out, a, b, N):
        return a + b

    msg = failure(capsys, lambda: check.forward("vector_add", returns))
    assert "1,000 never written" in msg
    assert "nothing was written into out" in msg
    assert "your function returned a value (ndarray), which the check ignores" in msg


def test_accumulator_tail_left_unchanged(capsys):
    def first_rows(dinp1, dinp2, dout, N):
        dinp1[:512] += dout[:512]
        dinp2[:512] += dout[:512]

    msg = failure(capsys, lambda: check.backward("residual", first_rows))
    assert "only the first 512 elements (a whole number of blocks) are right" in msg
    assert "from i=512 on were left as they were: the launch covers too few threads" in msg


def test_wrong_after_the_first_block(capsys):
    def bad_offset(out, a, b, N):
        out[:] = a + b
        out[128:] = (a + b)[: N - 128]  # as if every block used block 0's offset

    msg = failure(capsys, lambda: check.forward("vector_add", bad_offset))
    assert "only the first 128 elements (a whole number of blocks) are right" in msg
    assert "are wrong: an index that is right only in the first block?" in msg
