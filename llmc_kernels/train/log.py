"""What ``llmc train`` writes beside its checkpoints: OUT/log.csv (one row per step), OUT/log.json (the
run's options and summary), OUT/loss.png (the loss curve) and OUT/samples.txt."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

COLUMNS = ("step", "loss", "val_loss", "tokens_per_s", "ms")


def read_log(path) -> list[dict]:
    """The rows of a log.csv as dicts of floats (``val_loss`` None where not measured)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append(
                {
                    "step": int(r["step"]),
                    "loss": float(r["loss"]),
                    "val_loss": float(r["val_loss"]) if r["val_loss"] else None,
                    "tokens_per_s": float(r["tokens_per_s"]),
                    "ms": float(r["ms"]),
                }
            )
    return rows


class RunLog:
    """Appends one CSV row per step (flushed, so a killed run keeps its rows); on resume the rows after
    the checkpoint's step are dropped first, since those steps are trained again."""

    def __init__(self, out: Path, keep_until: int = 0):
        self.out = Path(out)
        self.csv_path, self.json_path = self.out / "log.csv", self.out / "log.json"
        self.png_path, self.samples_path = self.out / "loss.png", self.out / "samples.txt"
        self.rows = [r for r in read_log(self.csv_path) if r["step"] <= keep_until]
        with open(self.csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in self.rows:
                w.writerow(self._cells(r))
        self._file = open(self.csv_path, "a", newline="")
        self._writer = csv.writer(self._file)

    @staticmethod
    def _cells(r: dict) -> list[str]:
        val = "" if r["val_loss"] is None else f"{r['val_loss']:.6f}"
        return [str(r["step"]), f"{r['loss']:.6f}", val, f"{r['tokens_per_s']:.1f}", f"{r['ms']:.3f}"]

    def add(self, step: int, loss: float, val_loss: float | None, tokens_per_s: float, ms: float) -> None:
        r = {"step": step, "loss": loss, "val_loss": val_loss, "tokens_per_s": tokens_per_s, "ms": ms}
        self.rows.append(r)
        self._writer.writerow(self._cells(r))
        self._file.flush()

    def sample(self, step: int, text: str) -> None:
        with open(self.samples_path, "a", encoding="utf-8") as f:
            f.write(f"--- step {step} ---\n{text}\n")

    def summary(self) -> dict:
        if not self.rows:
            return {"steps": 0}
        vals = [(r["step"], r["val_loss"]) for r in self.rows if r["val_loss"] is not None]
        timed = [r["tokens_per_s"] for r in self.rows[1:]] or [self.rows[0]["tokens_per_s"]]  # step 1 warms up
        return {
            "steps": self.rows[-1]["step"],
            "first_loss": self.rows[0]["loss"],
            "last_loss": self.rows[-1]["loss"],
            "last_val_loss": vals[-1][1] if vals else None,
            "val_losses": vals,
            "mean_tokens_per_s": sum(timed) / len(timed),
        }

    def write_json(self, options: dict, extra: dict | None = None) -> None:
        doc = {"options": options, "summary": self.summary(), **(extra or {})}
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
        tmp.replace(self.json_path)

    def plot(self, title: str = "", initial_val_loss: float | None = None) -> Path | None:
        """The loss curve (train per step, validation where measured, and at step 0) as OUT/loss.png."""
        if not self.rows:
            return None
        from matplotlib.figure import Figure  # no pyplot: no display needed, a notebook's backend untouched

        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        ax.plot([r["step"] for r in self.rows], [r["loss"] for r in self.rows], lw=1, label="train")
        vals = [(r["step"], r["val_loss"]) for r in self.rows if r["val_loss"] is not None]
        if initial_val_loss is not None:
            vals.insert(0, (0, initial_val_loss))
        if vals:
            ax.plot(*zip(*vals), "o-", ms=4, label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy loss (nats)")
        ax.axhline(math.log(50257), color="grey", lw=0.5, ls="--")  # a uniform guess over GPT-2's vocabulary
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.png_path, dpi=100)  # the Agg canvas, chosen from the file name
        return self.png_path

    def close(self) -> None:
        self._file.close()
