"""Dashboards: the web UI (templates, static assets, its router mounted by the service).

Not built yet: this package lands with the dashboard milestone, after the HTTP service.
Nothing imports it today.
"""
