#!/usr/bin/env python3
"""What 10x and 100x the GPU time of the width studies would buy, from their own curves.

Reads the held-out curves that the two GPU width studies recorded (``data/benchmarks/
width_study_gpu.md`` for photographs, ``width_study_gpu_cifar10.md`` for CIFAR-10), fits each
run's curve with ``scaling_study.fit_power_law`` (bpd against minutes of its share of the GPU)
and extrapolates to 10x and 100x its minutes. Held-out crops are not the benchmarks, so each
prediction is carried over by the study's own measured ratio: for photographs, the Kodak (and
unseen-photo) change per unit of held-out change over the four widths (least squares through
the origin); for CIFAR-10, the test set's offset from the held-out images at the end of the
shipped run. Prints a markdown table and, with ``--out``, writes it and a figure.

    python scripts/forecast.py --out data/benchmarks

The fits are rough by construction: one run's curve under a decaying learning rate, from a
trained start, over minutes; a curve still falling like a logarithm gets the fit's smallest
exponent, so its prediction is a log-linear extrapolation (the report marks those). They
answer "does more of the same recipe reach the target?", not "where does this model end?".
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from scaling_study import B_RANGE, fit_power_law, predict

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "data" / "benchmarks"
FACTORS = (10, 100)


def table_rows(text: str, first: str) -> list[list[str]]:
    """The cells of a markdown table's body rows whose first cell matches ``first``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(first, cells[0]):
            rows.append(cells)
    return rows


def last_cell(cell: str) -> tuple[float, int]:
    """(held-out bpd, step) of a ``last`` row's cell, written ``4.2131 (5869)``."""
    value, step = re.fullmatch(r"([\d.]+) \((\d+)\)", cell).groups()
    return float(value), int(step)


def curves(text: str, runs: list[str], minutes: float) -> dict[str, tuple[list, list]]:
    """Each run's (minutes, held-out bpd) from a study's first step table: its ``step`` rows,
    then its ``last`` row's value and step (``4.2131 (5869)``), whose step took ``minutes``."""
    steps = table_rows(text[: text.index("| last")], r"\d+")
    last = table_rows(text, "last")[0]
    out = {}
    for i, run in enumerate(runs, 1):
        value, final = last_cell(last[i])
        points = [(int(r[0]), float(r[i])) for r in steps if r[i]] + [(final, value)]
        out[run] = ([s / final * minutes for s, _ in points], [b for _, b in points])
    return out


def photo_transfer(text: str) -> dict[str, tuple[float, float, float]]:
    """Per benchmark row of the photo study's export table (Kodak, unseen photos): (the start's
    score, the w256 run's score, benchmark change per unit of held-out change)."""
    start_held = float(re.search(r"scores ([\d.]+) there", text).group(1))
    held = [last_cell(c)[0] for c in table_rows(text, "last")[0][1:]]
    out = {}
    for row in table_rows(text, r"Kodak.*|.*unseen.*"):
        start, *scores = (float(c) for c in row[1:])
        dh = np.array(held) - start_held
        db = np.array(scores) - start
        out[row[0]] = (start, scores[-1], float(dh @ db / (dh @ dh)))
    return out


def cifar_shipped(text: str) -> tuple[float, float, float]:
    """(CIFAR-10 test, held-out, minutes of its restart) of the shipped run: the lr 2e-3 run
    restarted at lr 2e-3 for 3.4 minutes (the study's second and third tables)."""
    test = float(table_rows(text, r"3\.9771")[0][2])
    held = last_cell(table_rows(text, "last")[1][2])[0]
    restart = float(re.search(r"side by side for ([\d.]+) minutes", text).group(1))
    return test, held, restart


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="folder for forecast.md and forecast.png")
    args = p.parse_args()
    photo_text = (BENCH / "width_study_gpu.md").read_text()
    cifar_text = (BENCH / "width_study_gpu_cifar10.md").read_text()
    studies = {
        "photo": curves(photo_text, ["w64", "w128", "w192", "w256"], 8.8),
        "cifar10": curves(cifar_text, ["w128", "w192", "w256", "w256, lr 2e-3"], 8.6),
    }
    lines = ["| study, run | minutes | held-out at the end | fit: floor, exponent | "
             + " | ".join(f"held-out at {f}x" for f in FACTORS) + " |",
             "|---|---|---|---|" + "---|" * len(FACTORS)]
    fits = {}
    for study, runs in studies.items():
        for run, (t, y) in runs.items():
            fit = fits[study, run] = fit_power_law(t, y)
            log_like = " (log-like)" if fit[2] <= B_RANGE[0] * 1.01 else ""
            lines.append(f"| {study}, {run} | {t[-1]:.1f} | {y[-1]:.4f} | {fit[0]:.3f}, "
                         f"{fit[2]:.2f}{log_like} | "
                         + " | ".join(f"{predict(fit, t[-1] * f):.4f}" for f in FACTORS) + " |")
    lines += ["", "Carried over to the benchmarks (`-log2 p`):", "",
              "| benchmark | now | " + " | ".join(f"at {f}x" for f in FACTORS) + " | how |",
              "|---|---|" + "---|" * len(FACTORS) + "---|"]
    t, y = studies["photo"]["w256"]
    for name, (start, now, ratio) in photo_transfer(photo_text).items():
        gains = [ratio * (predict(fits["photo", "w256"], t[-1] * f) - y[-1]) for f in FACTORS]
        lines.append(f"| {name} (photo w256) | {now:.4f} | "
                     + " | ".join(f"{now + g:.4f}" for g in gains)
                     + f" | {ratio:.2f} x the held-out change (the four widths) |")
    t, y = studies["cifar10"]["w256, lr 2e-3"]
    fit = fits["cifar10", "w256, lr 2e-3"]
    test, held, restart = cifar_shipped(cifar_text)
    lines.append(f"| CIFAR-10 test (cifar10 w256, lr 2e-3) | {test:.4f} | "
                 + " | ".join(f"{predict(fit, t[-1] * f) + test - held:.4f}" for f in FACTORS)
                 + f" | the held-out prediction + the shipped run's test - held-out offset "
                 f"({test - held:+.4f}) |")
    lines += ["", f"Check: the CIFAR-10 fit predicts {predict(fit, t[-1] + restart):.4f} held-out "
              f"at {t[-1] + restart:.1f} minutes; the shipped run, restarted for its last "
              f"{restart:.1f}, reached {held:.4f}."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        (out / "forecast.md").write_text(
            "# What 10x and 100x the GPU width studies' time would buy\n\n"
            "`python scripts/forecast.py --out data/benchmarks` (fits of the curves in "
            "`width_study_gpu.md` and `width_study_gpu_cifar10.md`)\n\n" + text + "\n")
        plot(studies, fits, out / "forecast.png")


def plot(studies, fits, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (study, runs) in zip(axes, studies.items()):
        for run, (t, y) in runs.items():
            line, = ax.plot(t, y, "o", ms=3, label=run)
            span = np.geomspace(t[-1] / 10, t[-1] * max(FACTORS), 100)
            ax.plot(span, [predict(fits[study, run], s) for s in span], "-",
                    color=line.get_color(), lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("minutes of the run's GPU share (log)")
        ax.set_ylabel("held-out bpd")
        ax.set_title(f"{study}: measured (dots), fitted, to 100x")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    sys.exit(main())
