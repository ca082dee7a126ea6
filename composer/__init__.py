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


def predict(run, frame, *, batch_size: int = 8192):
    """One probability per task for raw rows: ``composer.predict("runs/mmoe", frame)`` takes a
    run folder and a pandas DataFrame of raw feature values (strings, NaN, unseen ids, lists or
    ``"a,b"`` text for list features) and returns a DataFrame with one column per task, indexed
    like ``frame``. See composer.prediction and docs/predict.md."""
    from .prediction import predict as _predict

    return _predict(run, frame, batch_size=batch_size)
