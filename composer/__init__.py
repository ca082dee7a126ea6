"""Composer: multi-task and multi-scenario recommendation models from YAML blueprints.

``import composer`` stays light (no TensorFlow); ``composer.load_model`` imports Keras and
registers Composer's layers on first use.
"""
__version__ = "0.1.0"


def load_model(path: str, safe_mode: bool = True):
    """Reload a saved ``.keras`` model built by Composer (registers Composer's layers first)."""
    import keras

    from . import layers  # noqa: F401  (registers every layer with keras.saving)

    return keras.models.load_model(path, safe_mode=safe_mode)
