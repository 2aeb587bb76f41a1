"""The REST service: tag one item, run and follow bulk jobs, read calibration reports.

``slicelab serve`` runs :func:`create_app` under uvicorn. Jobs run on the RQ
workers, never in the API process; their results live on disk (the run
folders), so an expired Redis key never loses a result. Errors are
``application/problem+json`` (RFC 9457). Every endpoint but the health checks
(``/healthz``, ``/readyz``) needs a bearer API key (``SLICELAB_API_KEYS``, comma separated, each optionally
``key:scope+scope``; or a keys file, one such entry per line), compared in
constant time.

Modules:

==================  ==============================================================================
``app``             :func:`create_app`: state, error handlers, body limit, the routers below
``settings``        :class:`Settings` (from the environment), :func:`parse_keys`, the scopes
``auth``            the bearer-key dependency :class:`~service.api.auth.RequireScope`
``problems``        problem+json bodies and the application's error handlers
``paths``           data-root paths of requests, server paths in error texts
``limits``          body size limit (ASGI middleware), /v1/tag deadline and judge concurrency
``state``           :class:`~service.api.state.ApiState` on ``app.state.api`` (settings, Redis, judge,
                    job folders, metrics), given to routes by the ``api_state`` dependency
``health``          router: ``/healthz``, ``/readyz``
``metrics``         router: ``/metrics``
``taxonomy``        router: ``/v1/taxonomy``
``tag``             router: ``/v1/tag``
``jobs``            router: ``/v1/jobs`` ...; ``job_folders`` (job folders on disk) and
                    ``job_engine`` (job state from the job engine)
``calibrations``    router: ``/v1/calibrations`` ...
``ui``              router: the review pages under ``/ui`` (HTML; session cookie, CSRF)
==================  ==============================================================================
"""

from slicelab.service.api.app import create_app
from slicelab.service.api.settings import Settings, parse_keys

__all__ = ["Settings", "create_app", "parse_keys"]
