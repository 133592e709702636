"""The engine probes under a short name: ``from lmech.probes import Loss, Sharpness`` (defined in
:mod:`lmech.observables.probes`, next to the instrument functions they wrap)."""
from .observables.probes import *  # noqa: F401,F403
from .observables.probes import __all__  # noqa: F401
