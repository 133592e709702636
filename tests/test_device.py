"""GPU readiness: on a CUDA device, training and sharpness agree with the CPU (float64)."""
import numpy as np
import pytest
import torch

from lmech import MLP, Digits, LearningRule, Schedule, System, Task, train
from lmech.probes import Loss, Sharpness
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; CI machines have none")


@cuda
def test_training_and_sharpness_on_cuda_match_cpu():
    system = System(MLP(width=64, depth=2, activation="tanh"), Digits(n_train=200, n_test=50), Task("mse"),
                    LearningRule(lr=0.1, steps=100, init_scale=0.5, dtype="float64"))
    def probes():
        return [Loss(Schedule(every=20)), Loss(Schedule(every=50), split="test"),
                      Sharpness(Schedule(every=50), k=2, tol=1e-8)]
    cpu, gpu = train(system, probes()), train(system, probes(), device="cuda")
    assert cpu.outcome == gpu.outcome == "completed"
    for name in ("loss/train", "loss/test", "sharpness/0", "sharpness/1"):
        np.testing.assert_allclose(gpu.series(name)[1], cpu.series(name)[1], rtol=1e-7)
