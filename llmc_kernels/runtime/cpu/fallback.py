"""When the C++ compiler rejects a kernel, ask NVRTC whether it is valid CUDA, and say whose fault it is.

The CPU backend compiles a translation of the learner's CUDA C, so a g++ error can come from the learner's
code (a typo, a type error) or from a limit of the translation (something it does not understand, or a
CUDA feature the backend does not provide). NVRTC, NVIDIA's own compiler, tells the two apart without a
GPU: if it accepts the kernel, the learner must hear "this is a limit of the CPU backend, not your code"
rather than a puzzle such as "cannot convert 'float*' to 'float*'". Without NVRTC we cannot know, and say
so. Only failed compiles pay for the NVRTC run.
"""

from __future__ import annotations

from ...errors import KernelCompileError
from ..source import SourceOrigin

NVRTC_INSTALL = (
    'pip install "cuda-bindings<13" nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 '
    "nvidia-cuda-cccl-cu12 (Linux and Windows)"
)


def _nvrtc_verdict(code: str, name: str, origin: SourceOrigin, flags: list[str]) -> bool | None:
    """True if NVRTC compiles the kernel, False if it rejects it, None if NVRTC is not available."""
    from .. import nvrtc

    try:
        if not nvrtc.available():
            return None
        nvrtc.check_compile(code, name, origin=origin, options=tuple(flags))
        return True
    except KernelCompileError:
        return False
    except Exception:  # an NVRTC that loads but cannot run: as good as none
        return None


def explain(
    err: KernelCompileError, code: str, name: str, origin: SourceOrigin, flags: list[str]
) -> KernelCompileError:
    """``err`` (the C++ compiler's error, in CUDA terms) as the learner should read it."""
    verdict = _nvrtc_verdict(code, name, origin, flags)
    fields = {"kernel": err.kernel, "location": err.location, "kernel_line": err.kernel_line}
    if verdict is False:
        return err  # NVRTC rejects it too: the compiler's message is about the learner's code
    if verdict is True:
        if "not supported by the CPU backend" in err.detail:  # a feature we decline (llmc_cg.h says which)
            advice = "To go on: change the kernel as the message says, or run it on a GPU (backend='cuda')."
        else:
            advice = (
                "To go on: write the line it names more plainly (spell a type out instead of auto or "
                "decltype, split a long expression, avoid a macro whose argument is a type), or run the "
                "kernel on a GPU (backend='cuda'). Please report it on the course repository's issue "
                "tracker, with the kernel string and this message, so that the CPU backend learns it."
            )
        return KernelCompileError(
            "NVRTC (NVIDIA's CUDA compiler) compiles this kernel, but the CPU backend cannot compile its "
            "translation to C++: this is a limit of the CPU backend, not your code.\n"
            "What the C++ compiler said about the translation (its types spelled as in CUDA):\n"
            f"{_indent(err.detail)}\n{advice}",
            **fields,
        )
    return KernelCompileError(
        f"{err.detail}\n  note: NVRTC (NVIDIA's CUDA compiler) is not installed here, so the code may or may not "
        "be valid CUDA: the error may be in your code, or a limit of the CPU backend's translation. To find "
        f"out, install NVRTC ({NVRTC_INSTALL}) or try the kernel on a GPU.",
        **fields,
    )


def _indent(text: str) -> str:
    return "\n".join(("  " + line) if line and not line.startswith("  ") else line for line in text.splitlines())
