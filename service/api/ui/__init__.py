"""Review pages served by ``slicelab serve`` under ``/ui``: reviewers correct judge labels of a calibration
record, seed gold items for a new benchmark, export a new gold version and re-calibrate on it.

Server-rendered HTML (templates under ``service/templates/ui/``), plain forms and one small
script per item page. Login takes an API key with the ``calibrations`` scope and a reviewer
name; the session is a signed cookie (see :mod:`service.api.ui.session`).

Modules:

===============  ================================================================================
``session``      signed session cookie, CSRF token and Origin checks, the route dependencies
``render``       templates with security headers, HTML error pages (:class:`~.render.UiRoute`)
``login``        router: ``/ui/login``, ``/ui/logout``
``reviews``      router: ``/ui/reviews`` (list, create), a review's overview and item pages
``review_view``  what an item page shows per axis, and the labels a submitted form holds
``actions``      router: export, re-calibrate, ``/ui/tasks/<id>``, ``/ui/seed``
===============  ================================================================================
"""

from fastapi import APIRouter

from slicelab.service.api.ui.actions import router as actions_router
from slicelab.service.api.ui.login import router as login_router
from slicelab.service.api.ui.reviews import router as reviews_router

router = APIRouter(include_in_schema=False)
for _part in (login_router, reviews_router, actions_router):
    router.include_router(_part)

__all__ = ["router"]
