"""Chapter 09 (the whole model): its exercises and checks pair up, the solutions pass, the usual mistakes of a
block fail the checks with the message the prose promises, and the figures the prose quotes (the trace, the
parameter count, the memory budget, the memorised passage) are what the cells compute."""

import math
import re

import pytest
from _chapter_cells import load, mutate, run, source

from llmc_kernels import CheckFailed
from llmc_kernels.model.config import GPT2Config, activation_shapes, num_params, training_bytes

CHAPTER = "09_gpt2_model"
EXERCISES = ["block_forward", "block_backward"]


def test_exercises_and_checks_pair_up():
    cells = load(CHAPTER)["cells"]
    info = [c["metadata"].get("llmc", {}) for c in cells]
    exercises = [i["exercise"] for i in info if i.get("role") == "exercise"]
    checks = {i["exercise"]: "".join(c["source"]) for c, i in zip(cells, info) if i.get("role") == "check"}
    assert exercises == EXERCISES and set(checks) == set(EXERCISES)
    for name in EXERCISES:
        assert checks[name].splitlines() == ["# NBVAL_CHECK_OUTPUT", f"result = check_model.{name}({name})"]


def test_the_solutions_pass():
    ns, _ = run(CHAPTER, ["imports"])
    _, printed = run(
        CHAPTER,
        ["ex-block_forward", "check-block_forward", "ex-block_backward", "check-block_backward", "end-to-end"],
        ns,
    )
    assert printed.split("\n")[:3] == ["PASS block_forward", "PASS block_backward", "PASS gpt2_end_to_end"]


@pytest.mark.parametrize(
    "cell, old, new, says",
    [
        (
            "ex-block_forward",
            'a["residual2"], p["ln2w"], p["ln2b"]',
            'a["residual2"], p["ln1w"], p["ln2b"]',
            "a['ln2'] of layer 0 is wrong",
        ),
        ("ex-block_forward", '    ops.gelu_forward(a["fch_gelu"], a["fch"], 4 * N)\n', "", "NaN (never written?)"),
        (
            "ex-block_backward",
            "    # attention half, backwards. residual2 = x + attproj\n"
            '    ops.residual_backward(dx, d["dattproj"], d["dresidual2"], N)\n',
            "",
            "the gradient of attprojb[1] is wrong",
        ),
        (
            "ex-block_backward",
            'ops.gelu_backward(d["dfch"], a["fch"],',
            'ops.gelu_backward(d["dfch"], a["fch_gelu"],',
            "the gradient of fcb[1] is wrong",
        ),
    ],
    ids=["ln1w-in-ln2", "no-gelu", "no-skip-into-dx", "gelu-of-its-output"],
)
def test_the_usual_mistakes_fail(cell, old, new, says):
    broken = mutate(source(load(CHAPTER), cell), old, new)
    check = cell.replace("ex-", "check-")
    with pytest.raises(CheckFailed, match=re.escape(says)):
        run(CHAPTER, ["imports", (cell, broken), check])


def test_the_trace_shows_what_the_prose_says():
    ns, printed = run(CHAPTER, ["imports", "trace-forward", "trace-backward"])
    calls = [line for line in printed.splitlines() if re.match(r"\w+\(", line)]
    L = GPT2Config.tiny().num_layers
    forward, backward = calls[: 1 + L + 4], calls[1 + L + 4 :]
    assert forward[0].startswith("encoder_forward(") and forward[-1].startswith("crossentropy_forward(")
    assert len(backward) == 3 + L + 1 and backward[-1].startswith("encoder_backward(dwte:")
    # each block is one line: how many calls and which ops, never the calls themselves (the exercise)
    uses = "attention_{d}, gelu_{d}, layernorm_{d} x2, matmul_{d} x4, residual_{d} x2"
    for l in range(L):
        line = f"block_forward(layer {l}): 10 calls, not shown (your exercise): " + uses.format(d="forward")
        assert forward[1 + l] == line
        line = f"block_backward(layer {L - 1 - l}): 10 calls, not shown (your exercise): " + uses.format(d="backward")
        assert backward[3 + l] == line
    for name in ("ln1", "qkv", "atty", "fch", "preatt", "attproj", "fcproj", "dqkv", "datty", "dfch"):
        assert f"{name}:" not in printed and f"{name}[" not in printed, name  # no block buffer is shown
    assert "residual3[1]:2x8x64" in printed  # layer 1's slice of the activation buffer (the prose's view)
    assert "matmul_forward(logits:2x8x50304, lnf:2x8x64, wte:50304x64, bias=None" in printed  # weight tying
    assert backward[0].startswith("crossentropy_softmax_backward(logits:")  # dlogits in logits
    assert backward[2].startswith("layernorm_backward(dres_a:") and "dres_a:2x8x64" in backward[-1]
    d12 = GPT2Config.d12()
    per_layer_preatt = 4 * d12.num_layers * 8 * d12.num_heads * 1024 * 1024
    assert round(per_layer_preatt / 1e9, 1) == 4.8  # "4.8 GB"


def test_the_prose_names_the_backward_ops_not_their_calls():
    """The backward table says which op, which gradient it reads, what it reads from the forward and what it
    adds into; it never writes a call with its arguments (that is block_backward, the exercise)."""
    nb = load(CHAPTER)
    prose = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for op in ("residual", "matmul", "gelu", "layernorm", "attention"):
        assert f"`{op}_backward`" in prose
        assert not re.search(rf"{op}_backward\(\s*d", prose), op


def test_parameters_and_memory_are_what_the_prose_quotes():
    _, printed = run(CHAPTER, ["imports", "params"])
    assert "total                        124,475,904   (formula: 124,475,904)" in printed
    assert "497,904,640 bytes" in printed
    d12 = GPT2Config.d12()
    assert num_params(d12) == 124_475_904 and num_params(GPT2Config.tiny()) == 3_323_648
    assert round(training_bytes(d12, 8, 1024) / 1e9, 1) == 16.7
    assert round(training_bytes(d12, 4, 1024) / 1e9, 1) == 9.4
    att = 4 * math.prod(activation_shapes(d12, 8, 1024)["att"])
    assert round(att / 1e9, 2) == 4.83
    assert round(6 * num_params(d12) * 8192 / 1e12, 1) == 6.1  # "6.1 TFLOP per step"


@pytest.mark.slow  # trains the blocks
def test_the_blocks_memorise_the_passage():
    ns, printed = run(CHAPTER, ["imports", "trace-forward", "ex-block_forward", "ex-block_backward", "it-learns"])
    losses = [float(x) for x in re.findall(r"loss ([0-9.]+)", printed)]
    assert losses[0] == pytest.approx(math.log(50257), abs=0.1) and losses[-1] < 5 and losses == sorted(losses)[::-1]
    assert printed.rstrip().splitlines()[-1] == repr(ns["text"])  # greedy recites it


def test_how_fast_skips_on_the_cpu_backend_with_a_reason():
    _, printed = run(CHAPTER, ["imports", "sizes", "how-fast"])
    assert "cpu backend" in printed.lower() and "skip" in printed.lower()
