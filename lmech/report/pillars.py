"""The atlas's frame: the five pillars of learning mechanics, the desiderata a law is scored on, and the open
directions (Simon et al. 2026, arXiv:2604.21691, Sec. 1.1, 2 and 5; REFERENCE 1 and 4)."""
from __future__ import annotations

PILLARS = {
    "solvable settings": "Exactly solvable models: deep linear networks, kernel regression, multi-index models.",
    "limits": "Insightful limits: infinite width and depth, lazy versus rich training, small initialization.",
    "simple laws": "Simple empirical laws: scaling laws, the edge of stability, the neural feature ansatz, "
                   "conservation laws.",
    "hyperparameter theories": "Hyperparameter theories: step size as curvature regularization, muP, SDE rules.",
    "universal behaviours": "Universality: shared inductive biases, representations and spectra across models.",
}

# (desideratum, what a law shows for it: lmech.report.html._desiderata decides it per verdict)
DESIDERATA = (
    ("Predictive", "a prediction drawn as a theory line against measured dots from training runs (laws whose "
                   "prediction is a direction, e.g. a trend's sign, show none)"),
    ("Quantitative", "a numeric error against a stated tolerance"),
    ("Falsifiable", "claim checks that fail the law when violated (each law also has a test injecting a wrong "
                    "constant)"),
    ("Humble (regime stated)", "the regime of validity written out, and checked where it can be"),
)

OPEN_DIRECTIONS = (
    ("OD 1", "Which solvable models capture deep, nonlinear learning?", "partial"),
    ("OD 2", "What would a theory of natural data look like?", "partial"),
    ("OD 3", "Does training implicitly minimize a functional complexity?", "proxy"),
    ("OD 4", "How should learned features be defined?", "proxy"),
    ("OD 5", "Are finite networks discretizations of infinite limits?", "yes"),
    ("OD 6", "Can all hyperparameters be understood and removed?", "yes"),
    ("OD 7", "Can scaling exponents be predicted a priori?", "yes"),
    ("OD 8", "How does curvature interact with architecture, features and generalization?", "yes"),
    ("OD 9", "What makes a good optimizer?", "partial"),
    ("OD 10", "In what sense do differently trained models converge?", "yes"),
    ("OD 11", "Does learning decompose into quanta?", "yes"),
    ("OD 12", "Does training proceed by low-rank, saddle-to-saddle steps?", "yes"),
)
