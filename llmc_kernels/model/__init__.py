"""GPT-2 as llm.c lays it out: the configuration, the parameters, two engines that train them, the files.

    from llmc_kernels.model import GPT2, GPT2Config
    model = GPT2.from_config(GPT2Config.tiny(), seed=0)        # or GPT2.from_checkpoint("gpt2_124M.bin")
    loss = model.step(inputs, targets, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, t=1)

``config``      GPT2Config and every shape derived from it (parameters, activations, memory estimates)
``state``       ParameterState: parameters, gradients, AdamW moments (one buffer each), GPT-2's init
``engine``      Engine: the interface both engines offer (forward, backward, update, step, generate, files)
``plain``       GPT2: the SPEC ops one at a time (the chapters' kernels, or any ops namespace)
``fast``        FastGPT2: fused kernels, flash attention, the training step as one CUDA graph (sm_70 and newer:
                on a T4 its flash attention is the SIMT kernel)
``graph``       StepGraph: capture a step once, replay it
``checkpoint``  llm.c's model files and the optimizer state beside them
"""

from .config import GPT2Config
from .engine import Engine
from .fast import FastGPT2
from .plain import GPT2, REQUIRED_OPS
from .state import ParameterState

# the engines by the names `llmc train --engine` takes
ENGINES: dict[str, type[Engine]] = {"fast": FastGPT2, "plain": GPT2}

__all__ = ["GPT2", "GPT2Config", "FastGPT2", "Engine", "ENGINES", "ParameterState", "REQUIRED_OPS"]
