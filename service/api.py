"""The REST service: tag one item, run and follow bulk jobs, read calibration reports.

``slicelab serve`` runs :func:`create_app` under uvicorn. Jobs run on the RQ
workers, never in the API process; their results live on disk (the run
folders), so an expired Redis key never loses a result. Errors are
``application/problem+json`` (RFC 9457). Every endpoint but the health checks
(``/healthz``, ``/readyz``) needs a bearer API key (``SLICELAB_API_KEYS``, comma separated, each optionally
``key:scope+scope``; or a keys file, one such entry per line), compared in
constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis import Redis
from redis import exceptions as redis_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from slicelab.calibration.records import calibrations_dir, home, latest_for_config, load_record
from slicelab.service import __version__, defaults
from slicelab.service.api_limits import BodyLimit, judge_concurrency, label_within
from slicelab.service.errors import ConfigError, SlicelabError
from slicelab.service.judge import judge_spec, make_judge
from slicelab.service.samples import Document, EvalSample

SCOPES = ("tag", "jobs", "calibrations", "metrics")
PROBLEM = "application/problem+json"


@dataclass
class Settings:
    """Service configuration (from the environment by :meth:`from_env`).

    Attributes:
        api_keys: key → allowed scopes.
        data_root: server-side files jobs may read (paths never escape it).
        judge: judge spec (default: ``SLICELAB_JUDGE_URL``/``SLICELAB_JUDGE_MODEL``, else embedded).
        redis_url: the Redis the workers listen on.
        max_body_bytes: request body limit (413 above it).
        max_text_chars: limit per text field of a tagged item (413 above it).
        tag_timeout_s: seconds one /v1/tag may take (504 above it).
    """

    api_keys: dict[str, set[str]]
    data_root: Path
    judge: dict[str, Any]
    redis_url: str
    queue: str = defaults.QUEUE_NAME
    max_body_bytes: int = 20 * 1024 * 1024
    max_text_chars: int = 200_000
    tag_timeout_s: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        """Read ``SLICELAB_API_KEYS`` / ``SLICELAB_API_KEYS_FILE``, ``SLICELAB_DATA_ROOT``, judge and Redis settings."""
        entries = [e for e in (os.environ.get("SLICELAB_API_KEYS") or "").split(",") if e.strip()]
        keys_file = os.environ.get("SLICELAB_API_KEYS_FILE")
        if keys_file:
            entries += [line for line in Path(keys_file).read_text().splitlines() if line.strip()]
        url = os.environ.get("SLICELAB_JUDGE_URL")
        return cls(
            api_keys=parse_keys(entries),
            data_root=Path(os.environ.get("SLICELAB_DATA_ROOT") or ".").resolve(),
            judge=judge_spec(judge_url=url, judge_model=os.environ.get("SLICELAB_JUDGE_MODEL")),
            redis_url=os.environ.get("REDIS_URL") or defaults.REDIS_URL,
        )


def parse_keys(entries: list[str]) -> dict[str, set[str]]:
    """``key`` (every scope) or ``key:scope+scope`` entries → key → scopes.

    Raises:
        ConfigError: an unknown scope (the allowed ones are named).
    """
    keys: dict[str, set[str]] = {}
    for entry in entries:
        key, _, scopes = entry.strip().partition(":")
        wanted = set(scopes.split("+")) if scopes else set(SCOPES)
        unknown = wanted - set(SCOPES)
        if unknown:
            raise ConfigError(f"API key scopes {sorted(unknown)} unknown; allowed: {', '.join(SCOPES)}")
        keys[key] = wanted
    return keys


class TagRequest(BaseModel):
    """One evaluation sample (``kind: eval``) or one pretraining document (``kind: document``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["eval", "document"] = "eval"
    item: dict[str, Any] = Field(description="EvalSample fields (id, question, reference_answer, model_output, "
                                             "correct...) or Document fields (id, text, source, url)")


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="a file under the server's data root (relative path)")
    kind: Literal["benchmark"] = "benchmark"
    limit: int | None = Field(default=None, ge=1)
    chunk_size: int = Field(default=defaults.CHUNK_SIZE, ge=1, le=10_000)


class CalibrationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gold: Literal["eval", "document"] | str = Field(default="eval", description="bundled set name, or a path under the data root")
    exemplars_k: int = Field(default=0, ge=0, le=8)
    limit: int | None = Field(default=None, ge=1)
    leave_one_benchmark_out: bool = Field(default=True, description="also measure k-NN and student with pools "
                                                                    "from other sources only")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application. See the module docstring for auth and errors."""
    from slicelab.service.taxonomy import load_taxonomy

    cfg = settings or Settings.from_env()
    taxonomy = load_taxonomy()
    labels_model = taxonomy.label_model("eval", with_failure_mode=True)
    plain_labels_model = taxonomy.label_model("eval")
    doc_labels_model = taxonomy.label_model("document")
    app = FastAPI(title="slicelab", version=__version__,
                  description="Capability-slice labeling of evaluation samples and pretraining documents.")
    registry = CollectorRegistry()
    m_labels = Counter("slicelab_labels_total", "Items labeled by /v1/tag, by status", ["status"], registry=registry)
    m_latency = Histogram("slicelab_judge_latency_seconds", "Judge latency of /v1/tag", registry=registry)
    m_tokens = Counter("slicelab_judge_tokens_total", "Judge tokens of /v1/tag", ["kind"], registry=registry)
    m_queue = Gauge("slicelab_queue_depth", "Jobs waiting in the RQ queue", registry=registry)
    m_workers = Gauge("slicelab_workers", "RQ workers registered", registry=registry)
    pool = ThreadPoolExecutor(max_workers=judge_concurrency(cfg.judge), thread_name_prefix="slicelab-tag")
    bearer = HTTPBearer(auto_error=False)
    jobs_dir = home() / "jobs"

    def redis() -> Redis:
        return Redis.from_url(cfg.redis_url, socket_connect_timeout=2, socket_timeout=5)

    def require(scope: str):
        def check(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
            if creds is None or not creds.credentials:
                raise StarletteHTTPException(401, "missing bearer API key")
            token = creds.credentials.encode()
            match = None
            for key, scopes in cfg.api_keys.items():
                if hmac.compare_digest(key.encode(), token):
                    match = scopes
            if match is None:
                raise StarletteHTTPException(401, "unknown API key")
            if scope not in match:
                raise StarletteHTTPException(403, f"this API key lacks the {scope!r} scope")
            return scope
        return check

    def problem(status: int, title: str, detail: Any, **extra) -> JSONResponse:
        detail = relative_paths(detail, cfg.data_root, jobs_dir) if isinstance(detail, str) else detail
        body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return problem(exc.status_code, _TITLES.get(exc.status_code, "Error"), exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return problem(422, "Invalid request", "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
                       errors=errors)

    @app.exception_handler(SlicelabError)
    async def slicelab_error(request: Request, exc: SlicelabError):
        return problem(422, "Invalid request", str(exc))

    @app.exception_handler(redis_errors.ConnectionError)
    @app.exception_handler(redis_errors.TimeoutError)
    async def redis_down(request: Request, exc: Exception):
        return problem(503, "Service unavailable", f"Redis does not answer ({type(exc).__name__}); nothing was "
                       "started, try again when it is back")

    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Redis or the judge is unreachable"}})
    def readyz():
        """Redis answers and the judge is reachable."""
        checks = {"redis": _redis_ok(redis), "judge": _judge_ok(cfg.judge)}
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics(_: str = Depends(require("metrics"))):
        """Prometheus metrics: labels by status, judge latency, tokens, queue depth, workers.

        Needs a key with the ``metrics`` scope (Prometheus: ``authorization: {credentials: KEY}``).
        """
        try:
            from rq import Queue, Worker

            conn = redis()
            m_queue.set(Queue(cfg.queue, connection=conn).count)
            m_workers.set(Worker.count(connection=conn))
        except Exception:  # noqa: BLE001 - metrics stay available when Redis is not
            pass
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/taxonomy", tags=["taxonomy"])
    def get_taxonomy(_: str = Depends(require("tag"))) -> dict:
        """The label vocabulary with its version, hash and JSON schemas."""
        return {**taxonomy.provenance(),
                "schemas": {"eval": taxonomy.json_schema("eval", with_failure_mode=True),
                            "document": taxonomy.json_schema("document")},
                "axes": {k: [{"name": a.name, "kind": a.kind, "labels": a.ids} for a in taxonomy.axes(k)]
                         for k in ("eval", "document")}}

    class TagResponse(BaseModel):
        id: str
        status: str
        labels: labels_model | plain_labels_model | doc_labels_model | None  # type: ignore[valid-type]
        error: str | None
        gate: dict[str, str]
        calibration_id: str | None
        provenance: dict[str, Any]

    @app.post("/v1/tag", tags=["tag"], response_model=TagResponse,
              responses={413: {"description": "a text field is too long"}, 504: {"description": "judge timeout"}})
    async def tag(req: TagRequest, _: str = Depends(require("tag"))):
        """Label one item with the configured judge; 504 when no answer came within the tag timeout.

        At most the judge's concurrency (``concurrency`` of the openai judge) judge calls run
        at once; a request waiting for its turn counts against its own timeout.
        """
        deadline = time.monotonic() + cfg.tag_timeout_s
        for name, value in req.item.items():
            if isinstance(value, str) and len(value) > cfg.max_text_chars:
                return problem(413, "Text field too large", f"item.{name}: {len(value)} characters; "
                               f"limit is {cfg.max_text_chars}", limit=cfg.max_text_chars, field=f"item.{name}")
        cls = EvalSample if req.kind == "eval" else Document
        try:
            item = cls.model_validate({"id": "request", **req.item})
        except ValidationError as e:
            errors = [{"field": "item." + ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                      for err in e.errors()]
            return problem(422, "Invalid request", "; ".join(f"{x['field']}: {x['message']}" for x in errors[:5]),
                           errors=errors)
        judge = await asyncio.to_thread(make_judge, cfg.judge)  # built once, off the event loop
        try:
            result = await label_within(pool, lambda: judge.label(item), deadline)
        except TimeoutError:
            return problem(504, "Judge timeout", f"the judge did not answer within {cfg.tag_timeout_s} s")
        m_labels.labels(str(result.status)).inc()
        m_latency.observe(result.latency_s)
        m_tokens.labels("prompt").inc(result.prompt_tokens)
        m_tokens.labels("completion").inc(result.completion_tokens)
        record = await asyncio.to_thread(latest_for_config, judge.config_hash(), req.kind)
        verdicts = (record or {}).get("judge_verdicts") or (record or {}).get("verdicts") or {}
        return {"id": item.id, "status": str(result.status), "labels": result.labels, "error": result.error,
                "gate": {a.name: verdicts.get(a.name, "ungated") for a in taxonomy.axes(req.kind)},
                "calibration_id": (record or {}).get("id"),
                "provenance": {**taxonomy.provenance(), "prompt_ref": result.prompt_ref,
                               "request_hash": result.request_hash, "model": result.model,
                               "backend": result.backend, "attempts": result.attempts}}

    @app.post("/v1/jobs", tags=["jobs"], status_code=202)
    def create_job(req: JobRequest, _: str = Depends(require("jobs"))) -> dict:
        """Start a bulk labeling job over a file under the data root; returns its id (202)."""
        path = safe_path(cfg.data_root, req.path)
        return _start_job(cfg, jobs_dir, path, req.limit, req.chunk_size, _answering(redis()))

    @app.post("/v1/jobs/upload", tags=["jobs"], status_code=202)
    def upload_job(file: UploadFile = File(...), limit: int | None = Form(default=None, ge=1),
                   _: str = Depends(require("jobs"))) -> dict:
        """Start a bulk labeling job over an uploaded file (kept inside the job's folder)."""
        conn = _answering(redis())  # before anything is written
        job_id = uuid.uuid4().hex[:16]
        folder = jobs_dir / job_id
        folder.mkdir(parents=True)
        try:
            name = Path(file.filename or "upload.jsonl").name or "upload.jsonl"  # never a path from the client
            target = folder / ("input" + Path(name).suffix.lower())
            with open(target, "wb") as out:
                shutil.copyfileobj(file.file, out)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return _start_job(cfg, jobs_dir, target, limit, defaults.CHUNK_SIZE, conn, job_id=job_id)

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    def job_status(job_id: str, _: str = Depends(require("jobs"))) -> dict:
        """State, counts by status, progress and errors of a job."""
        return _job_state(_job(jobs_dir, job_id), redis, jobs_dir)

    @app.get("/v1/jobs/{job_id}/results", tags=["jobs"], response_class=FileResponse,
             responses={409: {"description": "not finished"}, 410: {"description": "canceled"}})
    def job_results(job_id: str, format: Literal["parquet", "jsonl"] = "parquet", _: str = Depends(require("jobs"))):
        """The labeled table of a finished job, as Parquet or JSONL."""
        job = _job(jobs_dir, job_id)
        state = _job_state(job, redis, jobs_dir)
        if state["state"] == "canceled":
            return problem(410, "Job canceled", f"job {job_id} was canceled; its results are incomplete")
        if state["state"] != "finished":
            return problem(409, "Job not finished", f"job {job_id} is {state['state']}: {state['progress']}")
        out = Path(job["folder"]) / f"results.{format}"
        if not out.exists():
            from slicelab.service.output import write_table
            from slicelab.service.runner import RunPlan
            from slicelab.service.usecases.label_benchmark import finish, run_choice

            store = _store(job)
            m = store.manifest()
            plan = RunPlan(store, m["n_items"], m["n_rejected"], m["n_chunks"], [], True)
            write_table(finish(plan, *run_choice(m.get("meta") or {}))[0], out, format)
        media = "application/vnd.apache.parquet" if format == "parquet" else "application/x-ndjson"
        return FileResponse(out, media_type=media, filename=f"{job_id}.{format}")

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"])
    def cancel_job(job_id: str, _: str = Depends(require("jobs"))) -> dict:
        """Cancel a job: its queued chunks are removed from the queue; finished parts stay on disk."""
        from slicelab.service.rest_jobs import cancel

        _job(jobs_dir, job_id)  # 404 for an unknown job
        with _job_lock(jobs_dir, job_id):
            job = _job(jobs_dir, job_id)
            canceled = cancel(job, redis)
            _save_job(jobs_dir, job)
        return {"id": job_id, "state": "canceled", "chunks_canceled": canceled}

    @app.post("/v1/calibrations", tags=["calibrations"], status_code=202)
    def create_calibration(req: CalibrationRequest, _: str = Depends(require("calibrations"))) -> dict:
        """Calibrate the configured judge on a gold set (runs on a worker); returns the RQ job id."""
        from rq import Queue

        from slicelab.calibration.gold import BUNDLED, load_gold

        gold = BUNDLED[req.gold] if req.gold in BUNDLED else safe_path(cfg.data_root, req.gold)
        load_gold(gold)  # a bad gold file is refused now (422), not after the judge has worked
        spec = judge_spec(judge_url=cfg.judge.get("base_url"), judge_model=cfg.judge.get("model"),
                          exemplars_k=req.exemplars_k, exemplars_gold=str(gold) if req.exemplars_k else None)
        rq_job = Queue(cfg.queue, connection=_answering(redis())).enqueue(
            "slicelab.workers.tasks.calibrate", str(gold), spec, {"limit": req.limit, "lobo": req.leave_one_benchmark_out},
            job_timeout=6 * 3600,
            result_ttl=defaults.RESULT_TTL_S)
        return {"task_id": rq_job.id, "state": "queued",
                "poll": f"/v1/calibrations/tasks/{rq_job.id}"}

    @app.get("/v1/calibrations/tasks/{task_id}", tags=["calibrations"])
    def calibration_task(task_id: str, _: str = Depends(require("calibrations"))) -> dict:
        """State of a calibration started with POST /v1/calibrations (and the record id when finished)."""
        from rq.job import Job

        try:
            job = Job.fetch(task_id, connection=redis())
        except Exception:  # noqa: BLE001
            raise StarletteHTTPException(404, f"no calibration task {task_id!r} (unknown, or expired from Redis)")
        state = job.get_status().value
        return {"task_id": task_id, "state": state,
                "calibration_id": job.return_value() if state == "finished" else None}

    @app.get("/v1/calibrations/{cal_id}", tags=["calibrations"])
    def get_calibration(cal_id: str, _: str = Depends(require("calibrations"))) -> dict:
        """A calibration record: per-axis metrics, selection, verdicts."""
        return _record(cal_id)

    @app.get("/v1/calibrations/{cal_id}/report", tags=["calibrations"], response_class=HTMLResponse)
    def calibration_report(cal_id: str, _: str = Depends(require("calibrations"))):
        """The self-contained HTML calibration report."""
        from slicelab.calibration.report import write_report

        record = _record(cal_id)
        paths = write_report(record, calibrations_dir() / record["id"])
        return HTMLResponse(Path(paths["html"]).read_text(encoding="utf-8"))

    return app


_TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
           409: "Conflict", 410: "Gone", 413: "Request body too large", 422: "Invalid request",
           503: "Service unavailable", 504: "Judge timeout"}


def relative_paths(text: str, data_root: Path, jobs_dir: Path) -> str:
    """An error text with server paths shown relative to the data root (``jobs/<id>/...`` for job folders)."""
    for root, shown in ((jobs_dir, "jobs"), (data_root, "")):
        for form in dict.fromkeys((str(root), str(Path(root).resolve()))):
            text = text.replace(form + "/", f"{shown}/" if shown else "").replace(form, shown or ".")
    return text


def _answering(conn: Redis) -> Redis:
    """``conn`` once Redis answers a ping.

    Raises:
        redis.exceptions.ConnectionError / TimeoutError: Redis does not answer (the service says 503).
    """
    conn.ping()
    return conn


def safe_path(root: Path, relative: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse anything that escapes it or does not exist.

    Raises:
        StarletteHTTPException: 422 for an escape attempt or a missing file.
    """
    if "\x00" in relative:
        raise StarletteHTTPException(422, "path: NUL byte not allowed")
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise StarletteHTTPException(422, f"path: {relative!r} is outside the data root")
    if not target.is_file():
        raise StarletteHTTPException(422, f"path: no file {relative!r} under the data root")
    return target


def _record(cal_id: str) -> dict:
    if not cal_id.replace("-", "").isalnum():
        raise StarletteHTTPException(404, f"no calibration record {cal_id!r}")
    try:
        return load_record(cal_id)
    except ConfigError as e:
        raise StarletteHTTPException(404, str(e)) from e


def _redis_ok(redis) -> str:
    try:
        return "ok" if redis().ping() else "no answer"
    except Exception as e:  # noqa: BLE001
        return f"unreachable: {type(e).__name__}"


def _judge_ok(spec: dict) -> str:
    if spec.get("backend") == "openai":
        import httpx

        try:
            r = httpx.get(spec["base_url"].rstrip("/") + "/models", timeout=3)
            return "ok" if r.status_code < 500 else f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            return f"unreachable: {type(e).__name__}"
    try:
        make_judge(spec)
        return "ok"
    except SlicelabError as e:
        return f"unavailable: {e}"


def _job_path(jobs_dir: Path, job_id: str) -> Path:
    if not job_id.isalnum():
        raise StarletteHTTPException(404, f"no job {job_id!r}")
    return jobs_dir / job_id / "job.json"


def _job(jobs_dir: Path, job_id: str) -> dict:
    path = _job_path(jobs_dir, job_id)
    if not path.is_file():
        raise StarletteHTTPException(404, f"no job {job_id!r}")
    return json.loads(path.read_text())


def _save_job(jobs_dir: Path, job: dict) -> None:
    from slicelab.service.store import atomic_write

    atomic_write(_job_path(jobs_dir, job["id"]), json.dumps(job, indent=2).encode())


def _store(job: dict):
    from slicelab.service.store import RunStore

    return RunStore(Path(job["run_dir"]))


def _start_job(cfg: Settings, jobs_dir: Path, path: Path, limit: int | None, chunk_size: int, conn: Redis,
               job_id: str | None = None) -> dict:
    job_id = job_id or uuid.uuid4().hex[:16]
    folder = jobs_dir / job_id
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _plan_and_enqueue(cfg, jobs_dir, folder, job_id, path, limit, chunk_size, conn)
    except BaseException:  # Redis gone mid-way, a bad file...: no half-made job folder is left
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _plan_and_enqueue(cfg: Settings, jobs_dir: Path, folder: Path, job_id: str, path: Path, limit: int | None,
                      chunk_size: int, conn: Redis) -> dict:
    from itertools import islice

    from slicelab.service.readers import read_eval_samples
    from slicelab.service.rest_jobs import start_engine
    from slicelab.service.usecases import label_benchmark as usecase

    choice = usecase.choose_labelers(cfg.judge)  # the labelers `slicelab label-benchmark` would choose
    items = read_eval_samples(path)
    if limit:
        items = islice(items, limit)
    plan = usecase.prepare(items, choice, input_path=path, out_path=folder / "labels.parquet", chunk_size=chunk_size,
                           options={"limit": limit})
    job = {"id": job_id, "folder": str(folder), "run_dir": str(plan.store.root), "input": path.name,
           "n_items": plan.n_items, "n_rejected": plan.n_rejected, "n_chunks": plan.n_chunks, "queue": cfg.queue,
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "canceled": False}
    start_engine(job, plan.store, conn)
    _save_job(jobs_dir, job)
    return {"id": job_id, "state": "queued", "n_items": plan.n_items, "n_rejected": plan.n_rejected,
            "status_url": f"/v1/jobs/{job_id}"}


def _job_state(job: dict, redis, jobs_dir: Path) -> dict:
    from slicelab.service.rest_jobs import advance

    with _job_lock(jobs_dir, job["id"]):
        job = _job(jobs_dir, job["id"])  # read again under the lock: another request may have advanced it
        state = advance(job, _store(job), redis)
        _save_job(jobs_dir, job)
    return state


def _job_lock(jobs_dir: Path, job_id: str):
    """An exclusive lock on one job's folder (two status requests never enqueue the same chunk twice)."""
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def held():
        with open(_job_path(jobs_dir, job_id).with_name("job.lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return held()
