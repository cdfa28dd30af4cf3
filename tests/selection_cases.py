"""Hand-worked selection cases shared by the tests under tests/selection/.

Hand examples use probabilities that are multiples of 1/8, so every sum is exact in float64 and
the expected accuracies can be worked out on paper (comments show the work).
"""
from __future__ import annotations

import numpy as np

from ensemble.selection import TaskInput

IDS4 = ["r1", "r2", "r3", "r4"]


def col(*v):
    return np.array(v, dtype=np.float64)[:, None]


def inp(task, preds, labels, ids=IDS4, params=None):
    return TaskInput(task, list(ids), np.asarray(labels), {c: (list(ids), p) for c, p in preds.items()},
                     params or {})


def traj(sel):
    return [(s.step, s.candidate, s.own_score, s.ensemble_score, s.change, s.accepted, s.reason)
            for s in sel.trajectory]


# para, greedy, by hand
#
# labels 1 1 0 0
#   A .875 .375 .125 .125 -> 1 0 0 0  acc .75  log-loss (3*-ln .875 - ln .375)/4 = 0.345
#   B .625 .750 .625 .250 -> 1 1 1 0  acc .75  log-loss 0.507
#   C .250 .125 .250 .625 -> 0 0 0 1  acc .25
#   D .500 .625 .125 .125 -> 0 1 0 0  acc .75  (0.5 rounds half to even: 0)  log-loss 0.358
# order: A, D, B (tied at .75: by log-loss), C
#   {A}            .75
#   +D: (A+D)/2  = .6875 .5 .125 .125 -> 1 0 0 0 = .75  ties, kept
#   +B: (A+D+B)/3 = .667 .583 .292 .167 -> 1 1 0 0 = 1.0 improves by .25
#   +C: sum 2.25 1.875 1.125 1.125 /4 -> 1 0 0 0 = .75 lowers by .25, rejected
PARA_Y = [1, 1, 0, 0]
PARA = {
    "A": col(0.875, 0.375, 0.125, 0.125),
    "B": col(0.625, 0.75, 0.625, 0.25),
    "C": col(0.25, 0.125, 0.25, 0.625),
    "D": col(0.5, 0.625, 0.125, 0.125),
}

# caruana, by hand
#
# labels 1 1 0 0
#   A .875 .375 .125 .625 -> 1 0 0 1  acc .5
#   B 0    1    .25  .125 -> 0 1 0 0  acc .75
#   C 0    0    1    1    -> acc 0
# step 1: B (.75)
# step 2: +A: (A+B)/2 = .4375 .6875 .1875 .375 -> 0 1 0 0 = .75; +B: B again = .75; +C: 0 0 .625 .5625 -> 0
#         tie A/B at .75 -> log-loss: (A+B)/2 0.47 < B's (B gives 0 to a true label: 8.7) -> A
# step 3: +A: (2A+B)/3 = .583 .583 .167 .458 -> 1 1 0 0 = 1.0 improves; +B: (A+2B)/3 row 1 .29 -> .75
# step 4: +A: (3A+B)/4 = .656 .531 .156 .5 (half to even: 0) -> 1.0 ties
# best prefix: steps 1-3 -> weights B:1, A:2
CAR_Y = [1, 1, 0, 0]
CAR = {
    "A": col(0.875, 0.375, 0.125, 0.625),
    "B": col(0.0, 1.0, 0.25, 0.125),
    "C": col(0.0, 0.0, 1.0, 1.0),
}

# greedy-strict, caruana and bagged, by hand
#
# labels 1 0 1 0 (multiples of 1/16: every sum exact; 0.5 rounds half to even: 0)
#   A .875 .625  .75   .375 -> 1 1 1 0  acc .75 (wrong on row 2)  log-loss 0.468
#   B .625 .375  .375  .375 -> 1 0 0 0  acc .75 (wrong on row 3)  log-loss 0.598
#   D .75  .4375 .4375 .25  -> 1 0 0 0  acc .75                  log-loss 0.494
# order: A, D, B (all tied at .75: by log-loss)
# greedy (>=): A; (A+D)/2 = .8125 .53125 .59375 .3125 -> 1 1 1 0 = .75 ties, kept;
#   (A+D+B)/3 = .75 .479 .521 .333 -> 1 0 1 0 = 1.0, kept: {A, D, B}
# greedy-strict: A; A+D ties, not kept; (A+B)/2 = .75 .5 .5625 .375 -> 1 0 1 0 = 1.0 > .75: {A, B}
# caruana: step 1 A; step 2: A+A .75, A+D .75, A+B 1.0 -> B; nothing beats 1.0, the shortest prefix
#   reaching it is step 2: {A: 1, B: 1}
# caruana with 2 steps on two-candidate bags: {A, B} -> {A: 1, B: 1}; {A, D} -> A, then A+D ties A+A
#   at .75: kept prefix step 1, {A: 1}; {B, D} -> D (better loss), D+B ties: {D: 1}
STRICT_Y = [1, 0, 1, 0]
STRICT = {
    "A": col(0.875, 0.625, 0.75, 0.375),
    "B": col(0.625, 0.375, 0.375, 0.375),
    "D": col(0.75, 0.4375, 0.4375, 0.25),
}
