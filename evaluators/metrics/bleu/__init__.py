"""The `bleu` metric module, loaded by `evaluate.load` from this folder."""
