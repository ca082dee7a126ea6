"""Registered, serializable Keras layers (``keras.ops`` only, so every backend runs them).

Imported only when a model is compiled or loaded; importing this package registers every
layer under the ``composer`` package name for ``keras.saving``.
"""
from . import chains, dense, dynamic, experts, features, scenario  # noqa: F401
from . import sequence  # noqa: F401
from . import multitask, scenario_adaptive, scenario_mixture  # noqa: F401
