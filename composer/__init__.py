"""Composer: multi-task and multi-scenario recommendation models from YAML blueprints."""
__version__ = "0.1.0"
