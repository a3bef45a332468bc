"""headmaps: what every attention head does, from its parameters alone (MAPS).

Quick start::

    import headmaps as hm
    m = hm.load("smollm2-135m")
    res = hm.relation_scores(m, "country_to_capital")
"""

__version__ = "0.1.0"

from .errors import (
           CorruptFileError,
           HeadmapsError,
           ModelNotFoundError,
           UnsupportedArchitectureError,
)
from .models import DEFAULT_MODEL, HeadModel, load

__all__ = ["CorruptFileError", "DEFAULT_MODEL", "HeadModel", "HeadmapsError", "ModelNotFoundError",
           "UnsupportedArchitectureError", "__version__", "load"]
