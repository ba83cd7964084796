"""The `exact_match` metric module, loaded by `evaluate.load` from this folder."""
