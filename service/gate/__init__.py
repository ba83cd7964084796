"""The CI gate: rules comparing a candidate checkpoint with a baseline, with statistics.

Owns the gate's rule models (the spec's `gate:` section, `service.gate.rules`), the paired
statistics behind them (`service.gate.stats`), resolving references such as `@production`
(`service.gate.refs`), and the reports CI systems read (`service.gate.report`). It reads
checkpoints, evaluations and per-example scores through the `Registry` interface only;
running missing evaluations is the caller's job (the CLI hands it to `runners.evaluate`).
"""
