"""Runners: base-model sources, data formats and checks, the training loop, run orchestration.

A runner turns a validated spec into a recorded run: resolve the base model
(`runners.sources`), read and check the data (`runners.data`), train with the transformers
Trainer and peft (`runners.train`), and score each checkpoint through
`evaluators.evaluate_checkpoint`. It talks to the registry only through
`service.registry.Registry`, so the same code runs embedded or against a server.
"""
