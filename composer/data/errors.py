"""Data mistakes are user mistakes: same exception, same ``FILE:LINE:COL: key: ...`` format.

For data files, LINE is the 1-based line in the file (header = line 1) and the key is the column.
"""
from ..blueprint.errors import BlueprintError, Location, did_you_mean  # noqa: F401


class DataError(BlueprintError):
    """A mistake in a data file or a data description."""
