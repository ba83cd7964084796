"""evalctl: the public face. The `evalctl` CLI (the composition root) lives in `evalctl.cli`.

Importing this package is cheap: no torch, transformers or mlflow. `__version__` comes
from the installed distribution's metadata; a source checkout without it says so.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("evalctl")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
