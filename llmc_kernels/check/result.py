"""What a passing check returns: :class:`CheckResult` (its repr is the PASS line) and its ``report()``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CaseRecord:
    label: str
    expected_from: str
    ms: dict = field(default_factory=dict)  # schedule -> milliseconds of the call
    tensors: list = field(default_factory=list)  # TensorResult of the worst schedule per tensor


class Report(str):
    """The text of ``result.report()``: prints as itself in a notebook (no quotes)."""

    def __repr__(self):
        return str(self)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


@dataclass
class CheckResult:
    """What a passing check returns; ``repr()`` is the PASS line, ``.report()`` the details."""

    name: str
    backend: str
    seed: int
    schedules: tuple
    cases: list
    warnings: list
    seconds: float
    preflight: str = ""
    _shown_in: object = None
    race_warnings: list = field(default_factory=list)  # same-value write-write races (cpu backend)

    passed = True

    def __repr__(self):
        return f"PASS {self.name}"

    __str__ = __repr__

    def __bool__(self):
        return True

    def announce(self) -> None:
        """Print the PASS line (the one line a passing check shows)."""
        print(repr(self))
        self._shown_in = execution_count()

    def _ipython_display_(self):
        # The check has just printed the PASS line; echoing the same line as the cell's value would show it
        # twice. Later displays of the object (in another cell) show it.
        if self._shown_in is not None and self._shown_in == execution_count():
            self._shown_in = None
            return
        print(repr(self))

    def report(self) -> Report:
        where = "thread orders " + ", ".join(self.schedules) if self.backend == "cpu" else "launch_options(check=True)"
        lines = [f"PASS {self.name}: {len(self.cases)} cases on the {self.backend} backend ({where}), seed {self.seed}"]
        if self.preflight:
            lines.append(f"  pre-flight: {self.preflight}")
        for i, c in enumerate(self.cases, 1):
            ms = ", ".join(f"{s} {v:.1f} ms" for s, v in c.ms.items())
            src = (
                ""
                if c.expected_from == "reference"
                else f"; expected from {c.expected_from} of the float64 reference forward"
            )
            lines.append(f"  case {i}: {c.label}{src}   [{ms}]")
            for t in c.tensors:
                lines.append(f"      {t.row()}")
        if self.warnings:
            lines.append("  compiler warnings:")
            lines.extend(f"      {w}" for w in self.warnings)
        else:
            lines.append("  compiler warnings: none")
        if self.race_warnings:
            lines.append("  race warnings (not failures):")
            lines.extend(f"      {w}" for w in self.race_warnings)
        lines.append(f"  total {self.seconds:.2f} s")
        lines.append(
            "  this check judges results only and accepts non-kernel code (NumPy on the host); llmc grade "
            "accepts only outputs written by kernels your code compiles and launches"
        )
        return Report("\n".join(lines))


def execution_count():
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return getattr(shell, "execution_count", None) if shell is not None else None
    except Exception:
        return None


def warnings_of(fn) -> list[str]:
    """Compiler warnings of the RawKernels the learner's function uses (globals, closures, one level down)."""
    found, seen = [], set()

    def visit(obj, depth):
        if id(obj) in seen or depth > 2:
            return
        seen.add(id(obj))
        if type(obj).__name__ == "RawKernel" and hasattr(obj, "warnings"):
            try:
                for w in obj.warnings:
                    if w not in found:
                        found.append(w)
            except Exception:
                pass
            return
        code = getattr(obj, "__code__", None)
        if code is None:
            return
        glb = getattr(obj, "__globals__", {})
        for name in code.co_names:
            if name in glb:
                visit(glb[name], depth + 1)
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                visit(cell.cell_contents, depth + 1)
            except ValueError:
                pass

    visit(fn, 0)
    return found
