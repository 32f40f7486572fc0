"""robustal: robust active learning (DRE, Guo et al. 2021) as a library, CLI and study runner.

Layers, lowest first (a lower layer never imports a higher one):
data -> models -> attacks -> training/evaluation -> acquisition -> loop -> experiments -> report -> cli.
"""

from robustal.errors import ConfigError, DataError, PoolExhaustedError, RobustALError

__version__ = "0.2.0"

__all__ = ["ConfigError", "DataError", "PoolExhaustedError", "RobustALError", "__version__"]
