"""``llmc train`` and what it reads and writes.

``loop``    the command: options, the training loop, checkpoints every N steps, Ctrl-C handling
``setup``   decisions about the machine: the engine, the batch size that fits, TF32, the learning rate
``data``    TinyShakespeare, GPT-2's tokenizer, llm.c's token files, the batch loader
``log``     OUT/log.csv, log.json, the loss plot, samples
"""

from .loop import build_parser, checkpoints, evaluate, main, parse_args, train

__all__ = ["main", "train", "parse_args", "build_parser", "checkpoints", "evaluate"]
