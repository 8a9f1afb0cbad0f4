"""Greedy CTC decoding: a pure function from log-probabilities to text and confidences."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocr_core.charset import Charset

# How much the blank's logit is lowered before the greedy path is taken. The shipped student
# (a BiLSTM distilled from PP-OCRv6) drops characters: a glyph whose frames give it a little less
# than the blank vanishes (尺寸 read 尺, 真实 read 实 on small screen text). Lowering the blank by
# 1.0 cut errors on held-out synthetic lines by 10-14 % and on synthetic pages by 12-14 %, and
# chose between 0.5, 1, 1.5 and 2 there, never on the dev sets (docs/benchmarks.md, "Session 10").
# Checked again for the weights trained on clipped lines ("Session 11"): still -15 % on lines.
# Applied inside the runner's graph (`ocr_core.runtime.BestPath`), so it costs nothing per line.
BLANK_PENALTY = 1.0


@dataclass(frozen=True)
class Decoded:
    text: str
    confidence: float                 # probability of the greedy CTC path (geometric mean per step)
    char_confidences: tuple[float, ...]  # max probability of the step that emitted each character
    char_steps: tuple[int, ...]       # time step that emitted each character
    # Valid time steps of the line: step t covers input columns [t, t+1) * width / num_steps of the
    # prepared crop, whatever the model's stride, so positions map back to the crop without it.
    num_steps: int = 0


def greedy_decode(log_probs: np.ndarray, charset: Charset) -> Decoded:
    """T x C log-probabilities (class 0 = blank) → collapsed text with confidences."""
    best = log_probs.argmax(axis=1)                                       # T
    return collapse_path(best, log_probs[np.arange(len(best)), best], charset)


def collapse_path(best: np.ndarray, best_lp: np.ndarray, charset: Charset) -> Decoded:
    """The greedy path (best class per time step, T, and its log-probability, T) → text with
    confidences: repeats collapsed, blanks dropped.

    The line confidence is exp(mean of the best path's per-step log-probabilities): the path
    probability normalised by length, so long lines are not penalised for being long.
    """
    if len(best) == 0:
        return Decoded("", 0.0, (), (), 0)
    chars, confs, steps = [], [], []
    prev = 0
    for t, (k, lp) in enumerate(zip(best.tolist(), best_lp.tolist())):
        if k != 0 and k != prev:
            chars.append(charset.classes[k])
            confs.append(float(np.exp(lp)))
            steps.append(t)
        elif k != 0 and k == prev and confs:
            confs[-1] = max(confs[-1], float(np.exp(lp)))
        prev = k
    return Decoded("".join(chars), float(np.exp(np.mean(best_lp))), tuple(confs), tuple(steps), len(best))
