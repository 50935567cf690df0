"""affineur: build a whole Python dependency tree from source into standard wheels."""

from affineur.errors import AffineurError

__all__ = ["AffineurError", "__version__"]

__version__ = "0.1.0"
