"""Block families. Importing this package never imports TensorFlow."""
from .base import Block, Out, ShapeError  # noqa: F401
from .registry import all_blocks, get, register  # noqa: F401
