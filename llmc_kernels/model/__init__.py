"""GPT-2 as llm.c lays it out: the configuration, the parameters, two engines that train them, the files.

    from llmc_kernels.model import GPT2, GPT2Config
    model = GPT2.from_config(GPT2Config.tiny(), seed=0)        # or GPT2.from_checkpoint("gpt2_124M.bin")
    loss = model.step(inputs, targets, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, t=1)

``config``      GPT2Config and every shape derived from it (parameters, activations, memory estimates)
``plain``       GPT2: the SPEC ops one at a time (the chapters' kernels, or any ops namespace)
``fast``        FastGPT2: fused kernels, flash attention, the training step as one CUDA graph
``graph``       StepGraph: capture a step once, replay it
``checkpoint``  llm.c's model files and the optimizer state beside them
"""
from .config import GPT2Config
from .fast import FastGPT2
from .plain import GPT2, REQUIRED_OPS

__all__ = ["GPT2", "GPT2Config", "FastGPT2", "REQUIRED_OPS"]
