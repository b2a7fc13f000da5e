"""``python -m llmc_kernels train|grade|doctor ...``: the same as the ``llmc`` command."""

from .cli import entry

entry()
