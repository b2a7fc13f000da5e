"""The whole-model checks of chapters 09 and 10 (llmc_kernels.check.model): correct block functions pass, wrong
ones fail with a message naming the first wrong tensor and a useful hint, the end-to-end check rejects a broken
ops namespace, and loss_falls tells a run that learned from one that did not. The blocks are this file's own,
not the chapter's solution, so these tests mean something beside the notebooks."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
from _model_helpers import ops_under_test

from llmc_kernels import reference
from llmc_kernels.check import model as check_model
from llmc_kernels.errors import CheckFailed
from llmc_kernels.model import GPT2, REQUIRED_OPS
from llmc_kernels.train.log import RunLog

BLOCKS = """
def block_forward(ops, x, p, a, B, T, C, NH):
    N = B * T * C
    ops.layernorm_forward(a["ln1"], a["ln1_mean"], a["ln1_rstd"], x, p["ln1w"], p["ln1b"], B, T, C)
    ops.matmul_forward(a["qkv"], a["ln1"], p["qkvw"], p["qkvb"], B, T, C, 3 * C)
    ops.attention_forward(a["atty"], a["preatt"], a["att"], a["qkv"], B, T, C, NH)
    ops.matmul_forward(a["attproj"], a["atty"], p["attprojw"], p["attprojb"], B, T, C, C)
    ops.residual_forward(a["residual2"], x, a["attproj"], N)
    ops.layernorm_forward(a["ln2"], a["ln2_mean"], a["ln2_rstd"], a["residual2"], p["ln2w"], p["ln2b"], B, T, C)
    ops.matmul_forward(a["fch"], a["ln2"], p["fcw"], p["fcb"], B, T, C, 4 * C)
    ops.gelu_forward(a["fch_gelu"], a["fch"], 4 * N)
    ops.matmul_forward(a["fcproj"], a["fch_gelu"], p["fcprojw"], p["fcprojb"], B, T, 4 * C, C)
    ops.residual_forward(a["residual3"], a["residual2"], a["fcproj"], N)


def block_backward(ops, dx, dy, x, p, g, a, d, B, T, C, NH):
    N = B * T * C
    ops.residual_backward(d["dresidual2"], d["dfcproj"], dy, N)
    ops.matmul_backward(d["dfch_gelu"], g["fcprojw"], g["fcprojb"], d["dfcproj"], a["fch_gelu"], p["fcprojw"], B, T, 4 * C, C)
    ops.gelu_backward(d["dfch"], a["fch"], d["dfch_gelu"], 4 * N)
    ops.matmul_backward(d["dln2"], g["fcw"], g["fcb"], d["dfch"], a["ln2"], p["fcw"], B, T, C, 4 * C)
    ops.layernorm_backward(d["dresidual2"], g["ln2w"], g["ln2b"], d["dln2"], a["residual2"], p["ln2w"], a["ln2_mean"], a["ln2_rstd"], B, T, C)
    ops.residual_backward(dx, d["dattproj"], d["dresidual2"], N)
    ops.matmul_backward(d["datty"], g["attprojw"], g["attprojb"], d["dattproj"], a["atty"], p["attprojw"], B, T, C, C)
    ops.attention_backward(d["dqkv"], d["dpreatt"], d["datt"], d["datty"], a["qkv"], a["att"], B, T, C, NH)
    ops.matmul_backward(d["dln1"], g["qkvw"], g["qkvb"], d["dqkv"], a["ln1"], p["qkvw"], B, T, C, 3 * C)
    ops.layernorm_backward(dx, g["ln1w"], g["ln1b"], d["dln1"], x, p["ln1w"], a["ln1_mean"], a["ln1_rstd"], B, T, C)
"""
LN2_BACKWARD = (
    '    ops.layernorm_backward(d["dresidual2"], g["ln2w"], g["ln2b"], d["dln2"], a["residual2"], p["ln2w"], '
    'a["ln2_mean"], a["ln2_rstd"], B, T, C)\n'
)
ATTN_SKIP = '    ops.residual_backward(dx, d["dattproj"], d["dresidual2"], N)\n'


def blocks(*changes: tuple[str, str]) -> types.SimpleNamespace:
    """The two block functions, with each (old, new) replacement applied (old must occur exactly once)."""
    text = BLOCKS
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    namespace: dict = {}
    exec(compile(text, "<test blocks>", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def failure(capsys, check, *args, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        check(*args, **kwargs)
    printed = capsys.readouterr().out
    assert "PASS" not in printed and str(info.value).strip() in printed
    return str(info.value)


@pytest.fixture(autouse=True)
def cpu_backend(monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "cpu")


# ----------------------------------------------------------------------------------------- correct blocks
def test_correct_blocks_pass(capsys):
    b = blocks()
    forward = check_model.block_forward(b.block_forward)
    backward = check_model.block_backward(b.block_backward)
    assert capsys.readouterr().out == "PASS block_forward\nPASS block_backward\n"
    assert repr(forward) == "PASS block_forward" and "27 activations" in forward.report()
    assert max(backward.errors.values()) < 1e-12  # float64 against float64
    assert len(backward.fd) == 32 and all(abs(f - g) < 1e-8 for _, _, f, g in backward.fd)


def test_blocks_reproduce_the_model_exactly():
    """BlockGPT2 with the blocks is GPT2, bit for bit, on the tiny config's shape (the CHECK config is tiny)."""
    cfg = check_model.CHECK_CONFIG
    b = blocks()
    x = np.arange(12, dtype=np.int32).reshape(2, 6) % cfg.vocab_size
    models = [
        GPT2.from_config(cfg, seed=3, ops=reference),
        check_model.BlockGPT2.from_config(
            cfg, seed=3, ops=reference, block_forward=b.block_forward, block_backward=b.block_backward
        ),
    ]
    for m in models:
        m.forward(x, (x + 1) % cfg.vocab_size)
        m.zero_grad()
        m.backward()
    np.testing.assert_array_equal(models[0].acts_memory, models[1].acts_memory)
    np.testing.assert_array_equal(models[0].grads_memory, models[1].grads_memory)
    assert np.abs(models[0].grads_memory).max() > 0


# ----------------------------------------------------------------------------------------- wrong forwards
@pytest.mark.parametrize(
    "old, new, says",
    [
        ('x, p["ln1w"], p["ln1b"]', 'x, p["ln2w"], p["ln1b"]', ["a['ln1'] of layer 0 is wrong", "ln1w, ln1b"]),
        (
            '    ops.gelu_forward(a["fch_gelu"], a["fch"], 4 * N)\n',
            "",
            ["a['fch_gelu'] of layer 0 is wrong", "NaN (never written?)", "llm.c's block calls"],
        ),
        (
            'ops.residual_forward(a["residual2"], x, a["attproj"], N)',
            'ops.residual_forward(a["residual2"], a["ln1"], a["attproj"], N)',
            ["a['residual2'] of layer 0 is wrong", "adds the block's input x"],
        ),
        (
            'ops.residual_forward(a["residual2"], x, a["attproj"], N)',
            'ops.residual_forward(x, x, a["attproj"], N); a["residual2"][...] = x',
            ["the block's input x (acts['encoded']) is wrong", "must only read x"],
        ),
        (
            'p["fcprojw"], p["fcprojb"], B, T, 4 * C, C)',
            'p["fcprojw"], p["fcprojb"], B, T, C, C)',
            ["your block_forward raised", "op call number 9, matmul_forward"],
        ),
    ],
    ids=["ln2w-for-ln1w", "no-gelu", "residual-of-ln1", "writes-into-x", "fcproj-sizes"],
)
def test_wrong_forward_fails_naming_the_tensor(capsys, old, new, says):
    msg = failure(capsys, check_model.block_forward, blocks((old, new)).block_forward)
    assert msg.startswith("FAIL block_forward:")
    for needle in says:
        assert needle in msg, f"{needle!r} not in:\n{msg}"


def test_changing_a_parameter_fails(capsys):
    last = 'ops.residual_forward(a["residual3"], a["residual2"], a["fcproj"], N)\n'
    wrong = blocks((last, last + '    p["ln1b"][0] += 1.0\n'))  # after the block's work: every activation right
    msg = failure(capsys, check_model.block_forward, wrong.block_forward)
    assert "the parameters (block_forward must only read p) is wrong" in msg


# ----------------------------------------------------------------------------------------- wrong backwards
@pytest.mark.parametrize(
    "changes, says",
    [
        (
            [(LN2_BACKWARD + ATTN_SKIP, ATTN_SKIP + LN2_BACKWARD)],  # step 5 before step 6
            ["the gradient of attprojb[1] is wrong", "holds both its parts"],
        ),
        ([(ATTN_SKIP, ATTN_SKIP.replace('d["dresidual2"]', "dy"))], ["the gradient of attprojb[1] is wrong"]),
        (
            [('ops.layernorm_backward(dx, g["ln1w"]', 'ops.layernorm_backward(d["dln2"], g["ln1w"]')],
            ["[0] is wrong", "every gradient of the block above is right"],
        ),
        (
            [('ops.gelu_backward(d["dfch"], a["fch"],', 'ops.gelu_backward(d["dfch"], a["fch_gelu"],')],
            ["the gradient of fcb[1] is wrong"],
        ),
        (
            [
                (
                    "    N = B * T * C\n    ops.residual_backward",
                    '    N = B * T * C\n    g["ln1w"].fill(0)\n    ops.residual_backward',
                )
            ],
            ["the gradient of ln1w[1] is wrong"],
        ),
        (
            [('d["dfch"], a["ln2"], p["fcw"], B, T, C, 4 * C)', 'd["dfch"], a["ln2"], p["fcw"], B, T, C, C)')],
            ["your block_backward raised", "op call number 4, matmul_backward"],
        ),
    ],
    ids=[
        "attention-half-too-early",
        "dy-for-dresidual2",
        "dx-misses-ln1",
        "gelu-of-the-output",
        "zeroes-a-gradient",
        "fc-sizes",
    ],
)
def test_wrong_backward_fails_naming_the_tensor(capsys, changes, says):
    msg = failure(capsys, check_model.block_backward, blocks(*changes).block_backward)
    assert msg.startswith("FAIL block_backward:")
    for needle in says:
        assert needle in msg, f"{needle!r} not in:\n{msg}"


def test_the_student_copy_stub_is_not_a_check_failure():
    def block_forward(ops, x, p, a, B, T, C, NH):
        raise NotImplementedError("block_forward: replace this line with your code")

    with pytest.raises(NotImplementedError, match="replace this line"):
        check_model.block_forward(block_forward)
    with pytest.raises(TypeError, match="your function block_backward"):
        check_model.block_backward("not a function")


def test_the_seed_draws_another_case_and_llmc_grade_can_set_the_default(capsys, monkeypatch):
    b = blocks()
    three = check_model.block_backward(b.block_backward, seed=3)
    assert "seed 3" in three.report()
    assert check_model.block_backward(b.block_backward, seed=0).fd != three.fd
    monkeypatch.setattr(check_model, "DEFAULT_SEED", 3)  # what llmc grade --seed does
    assert check_model.block_backward(b.block_backward).fd == three.fd
    with pytest.raises(TypeError, match="seed must be an int"):
        check_model.block_forward(b.block_forward, seed="1")


def test_finite_differences_match_the_gradient_and_catch_a_wrong_one():
    cfg, params, inputs, targets, rng = check_model._case(0)
    truth, _ = check_model._truth(cfg, params, inputs, targets)
    entries = check_model._fd_entries(cfg, rng, inputs)
    assert {name for name, _ in entries} == set(truth.params)
    fds = check_model._finite_differences(truth, entries, inputs, targets)
    backprop = [float(truth.grads[n][i]) for n, i in entries]
    np.testing.assert_allclose(fds, backprop, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(truth.params_memory, params)  # every entry restored
    result = check_model.ModelCheckResult("x")
    backprop[5] *= 1.001  # a 0.1% error in one entry
    with pytest.raises(check_model._Failure, match=f"disagree for {entries[5][0]}"):
        check_model._compare_fd(result, entries, fds, backprop)


# ----------------------------------------------------------------------------------------- end to end
def _ops_with(**replaced):
    ops = ops_under_test()
    return types.SimpleNamespace(**{n: replaced.get(n, getattr(ops, n)) for n in REQUIRED_OPS})


def test_end_to_end_passes_with_the_package_kernels_and_the_blocks(capsys):
    b = blocks()
    result = check_model.end_to_end(ops_under_test(), block_forward=b.block_forward, block_backward=b.block_backward)
    assert capsys.readouterr().out == "PASS gpt2_end_to_end\n"
    assert len(result.losses) == check_model.UPDATES
    assert all(abs(h - w) < 1e-4 * w for h, w in result.losses) and result.losses[-1][0] < result.losses[0][0]
    assert 1e-9 < max(result.errors.values()) < check_model.FLOAT32[1]  # float32 against float64


def test_end_to_end_rejects_a_wrong_gelu_backward(capsys):
    ops = ops_under_test()

    def gelu_backward(dinp, inp, dout, N):
        ops.gelu_backward(dinp, inp, dout, N)
        ops.gelu_backward(dinp, inp, dout, N)  # added twice

    msg = failure(capsys, check_model.end_to_end, _ops_with(gelu_backward=gelu_backward))
    assert "the gradient of fcb[1] is wrong" in msg


def test_end_to_end_rejects_adamw_counting_from_zero(capsys):
    ops = ops_under_test()

    def adamw_update(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t):
        ops.adamw_update(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t + 1)

    msg = failure(capsys, check_model.end_to_end, _ops_with(adamw_update=adamw_update))
    assert "after 1 AdamW step(s)" in msg and "t counts from 1" in msg


def test_end_to_end_rejects_a_wrong_block(capsys):
    b = blocks(('a["residual2"], p["ln2w"], p["ln2b"]', 'a["residual2"], p["ln2w"], p["ln1b"]'))
    msg = failure(capsys, check_model.end_to_end, ops_under_test(), block_forward=b.block_forward)
    assert "the loss is" in msg and "the float64 reference model's" in msg


# ----------------------------------------------------------------------------------------- loss_falls
def _run(tmp_path, losses, vals, initial=10.8):
    log = RunLog(tmp_path)
    for step, loss in enumerate(losses, 1):
        log.add(step, loss, vals.get(step), 1000.0, 10.0)
    log.write_json({}, None if initial is None else {"initial_val_loss": initial})
    log.close()
    return {"out": str(tmp_path)}


def test_loss_falls_passes_a_run_that_learned(capsys, tmp_path):
    run = _run(tmp_path, np.linspace(10.8, 9.0, 20), {10: 9.8, 20: 9.2})
    result = check_model.loss_falls(run)
    assert capsys.readouterr().out == "PASS training_loss_falls\n"
    assert "validation loss 10.800 -> 9.200 over 20 steps" in result.report()
    check_model.loss_falls(tmp_path)  # the folder works as well


@pytest.mark.parametrize(
    "losses, vals, initial, says",
    [
        (np.linspace(10.8, 9.0, 20), {20: 10.5}, 10.8, "not 0.5 nats lower"),
        (np.linspace(9.0, 10.8, 20), {20: 9.0}, 10.8, "the training loss did not fall"),
        (np.linspace(10.8, 9.0, 20), {}, None, "no validation loss"),
        (np.linspace(10.8, 9.0, 5), {5: 9.0}, 10.8, "train at least 10"),
        (list(np.linspace(10.8, 9.0, 19)) + [math.nan], {20: 9.0}, 10.8, "not finite"),
    ],
    ids=["val-flat", "train-rises", "no-val", "too-short", "diverged"],
)
def test_loss_falls_rejects(capsys, tmp_path, losses, vals, initial, says):
    assert says in failure(capsys, check_model.loss_falls, _run(tmp_path, losses, vals, initial))


# ----------------------------------------------------------------------------------------- trace
def test_trace_names_every_buffer(capsys):
    cfg = check_model.CHECK_CONFIG
    model = GPT2.from_config(cfg, seed=0, ops=reference)
    x = np.arange(10, dtype=np.int32).reshape(2, 5)
    forward = check_model.trace(model, x, x + 1, backward=False)
    assert len(forward) == 1 + 10 * cfg.num_layers + 4  # encoder, blocks, lnf, matmul, softmax, ce
    assert forward[1].startswith("layernorm_forward(ln1[0]:2x5x12, ln1_mean[0]:2x5, ln1_rstd[0]:2x5, encoded:2x5x12")
    assert forward[-2] == "softmax_forward(probs:2x5x64, logits:2x5x64, B=2, T=5, V=61, Vp=64)"
    backward = check_model.trace(model, x, x + 1, forward=False)
    assert backward[-1] == "encoder_backward(dwte:64x12, dwpe:8x12, dres_a:2x5x12, inputs:2x5, B=2, T=5, C=12)"
    assert not any("?" in line for line in forward + backward), "a buffer the trace cannot name"
    assert capsys.readouterr().out.splitlines() == forward + backward
    assert model._op["encoder_forward"] is reference.encoder_forward  # the ops are restored
