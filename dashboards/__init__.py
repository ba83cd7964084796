"""Dashboards: the web UI that `evalctl serve` serves at `/`.

Server-rendered pages (Jinja2 + htmx, charts with uPlot; both from npm, served locally)
for runs, a run, comparing runs, an evaluation's examples, the registry (promote and roll
back through the gate) and jobs/runners. `dashboards.web.mount` attaches it to the service
app; `dashboards.session` logs users in with API tokens; each page is a module under
`dashboards.pages` with its SQL in `dashboards.queries`; `dashboards.curves` reads
training curves from MLflow and `dashboards.lttb` downsamples them. It imports `service`,
never the reverse (the service imports `dashboards.web` inside `create_app` only).
"""
