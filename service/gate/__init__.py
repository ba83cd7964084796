"""The CI gate: rules comparing a candidate checkpoint with a baseline, with statistics.

Owns the spec's `gate:` section (`service.gate.rule_spec`), resolving references such as
`@production` (`service.gate.refs`), reading each side's metrics and per-example scores
(`service.gate.sides`), judging rule by rule (`service.gate.rules`; statistical rules in
`service.gate.statistical`, the paired tests in `service.gate.stats`), and the reports CI
systems read (`service.gate.report`). It reads through the `Registry` interface only and
never writes: finding missing evaluations and moving aliases belong to the promotion flow
(`service.promotion`), and running evaluations to its caller (the CLI hands them to
`runners.evaluate`).
"""
