"""The FastAPI application: settings and shared state on ``app.state.api``, one router per resource."""

from __future__ import annotations

from fastapi import FastAPI

from slicelab.service import __version__
from slicelab.service.api.calibrations import router as calibrations_router
from slicelab.service.api.health import router as health_router
from slicelab.service.api.jobs import router as jobs_router
from slicelab.service.api.limits import BodyLimit
from slicelab.service.api.metrics import router as metrics_router
from slicelab.service.api.problems import add_problem_handlers
from slicelab.service.api.settings import Settings
from slicelab.service.api.state import ApiState
from slicelab.service.api.tag import tag_router
from slicelab.service.api.taxonomy import router as taxonomy_router
from slicelab.service.api.ui import router as ui_router


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application (see :mod:`service.api` for auth and errors).

    Args:
        settings: the configuration; default :meth:`Settings.from_env`.

    Raises:
        ConfigError: an API key with an unknown scope in the environment.
    """
    state = ApiState.create(settings or Settings.from_env())
    app = FastAPI(title="slicelab", version=__version__,
                  description="Capability-slice labeling of evaluation samples and pretraining documents.")
    app.state.api = state
    add_problem_handlers(app)
    app.add_middleware(BodyLimit, limit=state.settings.max_body_bytes)
    for router in (health_router, metrics_router, taxonomy_router, tag_router(state.taxonomy), jobs_router,
                   calibrations_router, ui_router):
        app.include_router(router)
    return app
