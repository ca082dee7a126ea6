"""The blueprint language: loading with positions, the schema, and validation."""
from .errors import BlueprintError, Location  # noqa: F401
from .validate import load_blueprint, load_blueprint_text  # noqa: F401
