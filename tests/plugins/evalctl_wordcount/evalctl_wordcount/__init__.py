"""A tiny third-party evalctl plugin: counts the words the model writes."""
