"""Laws ``momentum-edge-of-stability`` and ``adaptive-edge-of-stability``: heavy-ball GD and full-batch Adam
train at their own stability thresholds, (2 + 2 beta)/eta and (2 + 2 beta1)/((1 - beta1) eta)."""
from __future__ import annotations

from ..systems import LearningRule
from ..theory.stability import adam_threshold, heavy_ball_threshold
from ._hover import FINAL_FRACTION, INIT_SCALE, START_BELOW, HoverLaw, Setting
from .registry import register

_BETA = 0.9
_REGIME = (f"initial sharpness below {START_BELOW:g} x the threshold (sharpening, not an initial catapult) and "
           "sharpening reaching it before the final half of training; otherwise the verdict is out-of-regime.")


@register
class MomentumEdgeOfStability(HoverLaw):
    id = "momentum-edge-of-stability"
    title = "Heavy-ball GD trains at its edge of stability: sharpness hovers at (2 + 2 beta)/eta"
    pillar = "hyperparameter theories"
    claim = ("Full-batch gradient descent with heavy-ball momentum (PyTorch: v = beta v + g; theta -= eta v) is "
             "linearly stable on a quadratic of curvature S iff S < (2 + 2 beta)/eta (3.8/eta at beta = 0.9); "
             "trained on a real task, its sharpness rises to that threshold and hovers there.")
    citation = "Cohen, Kaur, Li, Kolter & Talwalkar 2021, arXiv:2103.00065 (momentum experiments, App.)"
    regime = "Full batch, MSE with the 1/(2n) reduction, momentum 0.9; " + _REGIME
    tolerance = 0.10
    tolerance_note = (f"Median sharpness over the final {FINAL_FRACTION:.0%} of steps within {tolerance:.0%} of "
                      "(2 + 2 beta)/eta for every step size (REFERENCE 2.8).")
    settings = {"quick": Setting(500, 5000, (0.07, 0.1), 25), "full": Setting(1000, 8000, (0.05, 0.07, 0.1), 20)}
    threshold_name = "(2+2beta)/eta"

    def rule(self, lr: float, steps: int) -> LearningRule:
        return LearningRule(lr=lr, steps=steps, optimizer="momentum", momentum=_BETA, init_scale=INIT_SCALE)

    def threshold(self, lr: float) -> float:
        return heavy_ball_threshold(lr, _BETA)


@register
class AdaptiveEdgeOfStability(HoverLaw):
    id = "adaptive-edge-of-stability"
    title = "Full-batch Adam trains at the adaptive edge of stability: lambda_max(P^-1 H) hovers at 38/eta"
    pillar = "hyperparameter theories"
    claim = ("Adam's update theta -= eta P^-1 m, with m an EMA of gradients and P = (1 - beta1^t)(sqrt(v_hat) + eps) "
             "frozen, is stable on a quadratic iff lambda_max(P^-1 H) < (2 + 2 beta1)/((1 - beta1) eta) (38/eta at "
             "beta1 = 0.9); in full-batch training the preconditioned sharpness rises to that threshold and hovers "
             "there, while P keeps adapting.")
    citation = "Cohen, Ghorbani, Krishnan, Agarwal, Medapati et al. 2022, arXiv:2207.14484"
    regime = ("Full batch, MSE with the 1/(2n) reduction, beta1 = 0.9, beta2 = 0.999, eps = 1e-8; the preconditioned "
              "sharpness is measured from the optimizer's state after each measured step; " + _REGIME)
    tolerance = 0.15
    tolerance_note = (f"Median preconditioned sharpness over the final {FINAL_FRACTION:.0%} of steps within "
                      f"{tolerance:.0%} of 38/eta for every step size (REFERENCE 2.8).")
    settings = {"quick": Setting(500, 2000, (3e-4, 1e-3, 3e-3), 25),
                "full": Setting(1000, 8000, (1e-4, 3e-4, 1e-3, 3e-3), 20)}
    metric = "preconditioned_sharpness/0"
    threshold_name = "38/eta"

    def rule(self, lr: float, steps: int) -> LearningRule:
        return LearningRule(lr=lr, steps=steps, optimizer="adam", betas=(_BETA, 0.999), init_scale=INIT_SCALE)

    def threshold(self, lr: float) -> float:
        return adam_threshold(lr, _BETA)
