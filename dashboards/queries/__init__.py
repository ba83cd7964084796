"""The dashboard's read-side data access: one module per page, SQL only here.

Pages (`dashboards.pages`) call these functions with a `Session`; they return plain
dataclasses or model rows ready for templates. Writes go through `service.crud` like
every other client, never through this package.
"""
