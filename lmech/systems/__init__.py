"""Systems: plain, validated, serializable configs of the four ingredients of a learning system."""
from ._validate import ConfigError
from .architecture import MLP, DeepLinear, ResidualMLP, Transformer
from .data import (MNIST1D, CircleFourier, Dataset, Digits, DigitsPriorTeacher, ModularArithmetic, MultiIndex, MultitaskParity,
                   PowerLawFeatures, TeacherStudent, WhitenedLinear, whiten)
from .learning_rule import LearningRule
from .networks import build_model
from .system import System
from .task import Task, cross_entropy, half_mse

__all__ = [
    "ConfigError", "MLP", "DeepLinear", "ResidualMLP", "Transformer", "MNIST1D", "ModularArithmetic", "Dataset",
    "CircleFourier", "Digits", "DigitsPriorTeacher", "MultiIndex", "MultitaskParity", "PowerLawFeatures",
    "TeacherStudent", "WhitenedLinear", "whiten", "LearningRule", "build_model", "System",
    "Task", "cross_entropy", "half_mse",
]
