"""evalctl: the public face. The `evalctl` CLI (the composition root) lives in `evalctl.cli`.

Importing this package is cheap: no torch, transformers or mlflow.
"""

__version__ = "0.1.0"
