"""The registry's HTTP API: FastAPI routers, auth, request limits and the MLflow mount.

`service.app.create_app` assembles these pieces; this package owns the HTTP surface only.
Routes are thin (parse, call `service.crud`, return `*Public` models);
SQL lives in the data-access modules, never here. How to add a resource: write
`routes/<noun>.py` with an `APIRouter` (see `routes/checkpoints.py`), give every route a
scope through `auth.require(...)`, and list the module in `routes/__init__.py`.
"""
