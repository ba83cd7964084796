"""The registry: settings, DB engine, SQLModel tables, data access, the spec schema.

`service/` owns what every other package agrees on: the spec (`service.spec`), the
registry interface (`service.registry`) and its local SQLModel implementation, and the
settings. It imports none of `runners/`, `evaluators/` or `monitors/` at module level;
where it needs them (evaluator names while validating a spec) it goes through their
named registries, lazily.
"""
