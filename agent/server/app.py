"""The coordinator's HTTP interface: a Starlette ASGI app served by uvicorn over TLS.

Endpoints (all under /v1; JSON unless noted; the stage uploads are the binary messages of
`agent.federation.protocol`). Every request but the two public reads is signed by the device key
(`agent.federation.signing`, one x-ownrec-auth header): the path names the round and the stage, the
signature covers the path and query exactly as received, and the body.
    GET  /v1/info                              public: signing key, latest version, privacy spent
    GET  /v1/releases/latest                   public: the latest signed release (binary)
    POST /v1/checkin                           {"device_public": hex, "base_version": int, "enrolment_token":
                                               code (until enrolled)} -> round, index; only enrolled devices
    GET  /v1/rounds/{id}/status?since=S&wait=T  long poll: returns when the state differs from S (or after T s)
    POST /v1/rounds/{id}/advertise-keys        stage 1
    GET  /v1/rounds/{id}/neighbour-keys        the advertised keys of this client's neighbours
    POST /v1/rounds/{id}/share-keys            stage 2: sealed envelopes, forwarded unopened
    GET  /v1/rounds/{id}/envelopes             the envelopes addressed to this client, and who completed stage 2
    POST /v1/rounds/{id}/masked-input          stage 3
    GET  /v1/rounds/{id}/survivors             who sent a masked input and who dropped
    POST /v1/rounds/{id}/unmasking             stage 4
    GET  /v1/rounds/{id}/outcome               signed: was this device's masked input summed (any time later)
    GET  /healthz                              public: 200 {"status": "ok", ...} or 503 if the database is down
    GET  /metrics                              Prometheus text format (`metrics`); a bearer token if configured
A refused request gets a 4xx status and {"error": code, "message": text}, with "retry_after" (seconds,
also as a Retry-After header) when the client should come back later. Vectors never reach a log: the app
logs round events and refusals (`observability`): JSON lines, or text on a terminal.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import ipaddress
import json
import logging
import logging.config
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.federation import protocol
from agent.federation.neighbourhood import MAX_SPARSE_DEGREE
from agent.federation.layout import SharedLayout
from agent.federation.prior import Prior
from agent.server import metrics, observability
from agent.server.coordinator import STATES, Coordinator, CoordinatorError, CoordinatorSettings
from agent.server.state import open_storage

log = logging.getLogger("ownrec.coordinator")
ROUND_ID = re.compile(r"^[0-9a-f]{32}$")
STAGE_PATHS = {"advertise-keys": protocol.Stage.ADVERTISE_KEYS, "share-keys": protocol.Stage.SHARE_KEYS,
               "masked-input": protocol.Stage.MASKED_INPUT, "unmasking": protocol.Stage.UNMASKING}
CHECKIN_LIMIT = 4096
MAX_WAIT_SECONDS = 25.0
# How often a long poll looks at the database without being woken: catches deadlines, and changes made
# by another worker process. Each look costs a query, times every waiting client.
RECHECK_SECONDS = 1.5
MOVIELENS_ITEMS = 1682


def create_app(coordinator: Coordinator, metrics_token: str | None = None) -> Starlette:
    """`metrics_token`: when given, GET /metrics needs `Authorization: Bearer <it>`."""
    parameters = coordinator.info()["parameters"]
    upload_limit = protocol.HEADER.size + max(protocol.LENGTH.size + 4 * parameters,
                                              protocol.COUNT.size + MAX_SPARSE_DEGREE * protocol.ENVELOPE_ENTRY.size)
    state: dict[str, asyncio.Event] = {}

    def changed_event() -> asyncio.Event:
        if "changed" not in state:
            state["changed"] = asyncio.Event()
        return state["changed"]

    def notify() -> None:
        # Wake every long poll in this worker; pollers in other workers re-check every RECHECK_SECONDS.
        event = changed_event()
        state["changed"] = asyncio.Event()
        event.set()

    async def read_body(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise CoordinatorError(413, "too_large", f"the body is limited to {limit} bytes for this request")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise CoordinatorError(413, "too_large", f"the body is limited to {limit} bytes for this request")
            chunks.append(chunk)
        return b"".join(chunks)

    async def authenticate(request: Request, body: bytes, register_public: bytes | None = None,
                           enrolment_token: str | None = None) -> str:
        headers = {k.lower(): v for k, v in request.headers.items()}
        # The client signs the request target exactly as it sent it: the raw path and the raw query.
        path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        target = (path + (b"?" + query if query else b"")).decode("latin-1")
        # The peer address, as uvicorn gives it (behind a proxy, the proxy's: see docs/threat-model.md).
        address = request.client.host if request.client else None
        device = await run_in_threadpool(coordinator.authenticate, request.method, target, body, headers,
                                         register_public, enrolment_token, address)
        observability.note_device(device)
        return device

    def round_id_of(request: Request) -> str:
        round_id = request.path_params["round_id"]
        if not ROUND_ID.match(round_id):
            raise CoordinatorError(400, "bad_round_id", "a round id is 32 lowercase hex characters")
        return round_id

    async def info(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(coordinator.info))

    async def latest_release(request: Request) -> Response:
        return Response(await run_in_threadpool(coordinator.latest_release_bytes), media_type="application/octet-stream")

    async def checkin(request: Request) -> Response:
        body = await read_body(request, CHECKIN_LIMIT)
        try:
            payload = json.loads(body)
            device_public = bytes.fromhex(payload["device_public"])
            base_version = payload.get("base_version")
            token = payload.get("enrolment_token")
            if len(device_public) != 32 or not (base_version is None or isinstance(base_version, int)) \
                    or not (token is None or (isinstance(token, str) and len(token) <= 64)):
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CoordinatorError(400, "malformed_checkin", 'a check-in is {"device_public": 64 hex characters, '
                                   '"base_version": integer, "enrolment_token": the code, until enrolled}') from None
        device = await authenticate(request, body, register_public=device_public, enrolment_token=token)
        result = await run_in_threadpool(coordinator.check_in, device, base_version)
        notify()
        return JSONResponse(result)

    async def status(request: Request) -> Response:
        round_id = round_id_of(request)
        device = await authenticate(request, b"")
        since = request.query_params.get("since")
        try:
            wait = min(max(float(request.query_params.get("wait", "0")), 0.0), MAX_WAIT_SECONDS)
        except ValueError:
            raise CoordinatorError(400, "bad_wait", "wait is a number of seconds") from None
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        while True:
            event = changed_event()
            result = await run_in_threadpool(coordinator.status, round_id, device)
            remaining = end - loop.time()
            if result["state"] != since or remaining <= 0:
                if result["state"] != since and since in STATES:
                    notify()  # this poll may have moved the round on (a deadline): wake the others
                return JSONResponse(result)
            try:
                await asyncio.wait_for(event.wait(), timeout=min(RECHECK_SECONDS, remaining))
            except TimeoutError:
                pass

    async def upload(request: Request) -> Response:
        round_id = round_id_of(request)
        stage = STAGE_PATHS.get(request.path_params["stage"])
        if stage is None:
            raise CoordinatorError(404, "unknown_stage", f"no stage {request.path_params['stage']!r}")
        body = await read_body(request, upload_limit)
        device = await authenticate(request, body)
        moved = await run_in_threadpool(coordinator.submit, round_id, device, stage, body)
        if moved:
            notify()
        return JSONResponse({"accepted": stage.name.lower(), "bytes": len(body)})

    def reader(method_name: str):
        async def endpoint(request: Request) -> Response:
            round_id = round_id_of(request)
            device = await authenticate(request, b"")
            return JSONResponse(await run_in_threadpool(getattr(coordinator, method_name), round_id, device))
        return endpoint

    async def healthz(request: Request) -> Response:
        status_code, body = await run_in_threadpool(metrics.health, coordinator)
        return JSONResponse(body, status_code=status_code)

    registry = metrics.metrics_registry(coordinator)

    async def prometheus(request: Request) -> Response:
        if metrics_token is not None and not metrics.bearer_token_matches(request.headers.get("authorization"),
                                                                          metrics_token):
            raise CoordinatorError(401, "metrics_unauthorized", "/metrics needs the operator's bearer token "
                                   "(Authorization: Bearer ...; --metrics-token-file)")
        try:
            text = await run_in_threadpool(metrics.exposition, registry)
        except Exception as error:  # noqa: BLE001 - the database is down: say so, as /healthz does
            raise CoordinatorError(503, "database_unavailable", "the metrics cannot be read: the database did "
                                   f"not answer ({type(error).__name__})") from None
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    refusals = observability.RefusalCounter(coordinator.storage)

    async def refused(request: Request, error: Exception) -> Response:
        headers = dict(getattr(error, "headers", None) or {})  # 405's Allow
        if isinstance(error, HTTPException):  # no such route, or not with that method (Starlette's own)
            code = {404: "no_such_endpoint", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
            error = CoordinatorError(error.status_code, code, f"{request.method} {request.url.path}: {error.detail}")
        assert isinstance(error, CoordinatorError)
        observability.request_refused(request.scope, request.headers, error.code, error.status)
        await refusals.record(error.code, error.status)
        body: dict[str, Any] = {"error": error.code, "message": error.message}
        if error.retry_after is not None:
            body["retry_after"] = round(error.retry_after, 1)
            headers["retry-after"] = str(math.ceil(error.retry_after))  # HTTP wants whole seconds
        return JSONResponse(body, status_code=error.status, headers=headers)

    routes = [
        Route("/v1/info", info, methods=["GET"]),
        Route("/v1/releases/latest", latest_release, methods=["GET"]),
        Route("/v1/checkin", checkin, methods=["POST"]),
        Route("/v1/rounds/{round_id}/status", status, methods=["GET"]),
        Route("/v1/rounds/{round_id}/neighbour-keys", reader("neighbour_keys"), methods=["GET"]),
        Route("/v1/rounds/{round_id}/envelopes", reader("envelopes_for"), methods=["GET"]),
        Route("/v1/rounds/{round_id}/survivors", reader("survivors_for"), methods=["GET"]),
        Route("/v1/rounds/{round_id}/outcome", reader("round_outcome"), methods=["GET"]),
        Route("/v1/rounds/{round_id}/{stage}", upload, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={CoordinatorError: refused, HTTPException: refused},
                     middleware=[Middleware(observability.RequestLogMiddleware)])


# -- keys, certificate and configuration on disk ----------------------------------------------------

def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def load_or_create_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    """The coordinator's Ed25519 release-signing key (raw 32 bytes, mode 0600), created once."""
    path = Path(state_dir) / "signing.key"
    if not path.exists():
        _write_private(path, Ed25519PrivateKey.generate().private_bytes_raw())
    return Ed25519PrivateKey.from_private_bytes(path.read_bytes())


def ensure_tls_certificate(state_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for `hosts` (kept if it already covers them): clients pin it."""
    cert_path, key_path = Path(state_dir) / "tls-cert.pem", Path(state_dir) / "tls-key.pem"
    names = sorted(set(hosts) | {"localhost", "127.0.0.1"})
    if cert_path.exists() and key_path.exists():
        existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = existing.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        covered = {str(v) for v in san.get_values_for_type(x509.DNSName)} | \
                  {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        if set(names) <= covered:
            return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ownrec coordinator")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=825))
                   .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def default_layout(items_file: Path | None = None, dim: int = 384, rank: int = 16,
                   residual_rank: int = 32) -> SharedLayout:
    """The item vocabulary (one `source:external_id` ref per line, or the MovieLens-100K films), a fresh
    random projection A_g and a fresh residual basis W_v (k = `residual_rank`; see `sync.parameters`)."""
    if items_file is not None:
        refs = [line.strip() for line in Path(items_file).read_text().splitlines() if line.strip()]
    else:
        refs = [f"movielens-100k:{i}" for i in range(1, MOVIELENS_ITEMS + 1)]
    return SharedLayout.create(dim, rank, refs, residual_rank=residual_rank)


def write_pin(state_dir: Path, url: str, coordinator: Coordinator, cert_path: Path) -> Path:
    """What a client must pin to join: the URL, the release-signing key and the TLS certificate."""
    path = Path(state_dir) / "coordinator-pin.json"
    # Written whole or not at all: an operator copying it (or a test waiting for it) never reads half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"url": url, "signing_public_key": coordinator.public_key.hex(),
                                   "tls_certificate": cert_path.read_text()}, indent=2))
    os.replace(partial, path)
    return path


ENVIRONMENT = "OWNREC_COORDINATOR_CONFIG"


def build_coordinator(config: dict[str, Any]) -> Coordinator:
    state_dir = Path(config["state_dir"])
    storage = open_storage(config["db"])
    initial = None
    if config.get("prior"):  # a public prior: its layout and vector become release 1
        prior = Prior.from_bytes(Path(config["prior"]).read_bytes())
        layout, initial = prior.layout, prior.vector
    else:
        layout = default_layout(Path(config["items_file"]) if config.get("items_file") else None,
                                int(config.get("dim", 384)), int(config.get("rank", 16)),
                                int(config.get("residual_rank", 32)))
    return Coordinator(storage, load_or_create_signing_key(state_dir), CoordinatorSettings(**config["settings"]),
                       default_layout=layout, initial_vector=initial)


def read_metrics_token(path: str | Path | None) -> str | None:
    """The bearer token /metrics asks for, from the first line of `path` (None: /metrics is open)."""
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as error:
        raise ValueError(f"cannot read the metrics token file {path}: {error.strerror}") from None
    if len(token) < 16:
        raise ValueError(f"the metrics token in {path} is {len(token)} characters: use at least 16 "
                         "(e.g. `openssl rand -hex 32 > FILE`)")
    return token


def app_from_environment() -> Starlette:
    """The uvicorn factory for several workers: each worker builds its app from the same JSON config."""
    config = json.loads(os.environ[ENVIRONMENT])
    return create_app(build_coordinator(config), read_metrics_token(config.get("metrics_token_file")))


# uvicorn closes an idle connection after 5 s by default. A client in a round is busy between requests (training,
# sealing envelopes, masking) and on a loaded machine that can take longer; a request it then sends on the
# connection being closed fails with "Server disconnected without sending a response" (4 of 1,000 clients in one
# `ownrec bench` run). Rounds last minutes: keep connections as long.
KEEP_ALIVE_SECONDS = 300


def public_address(host: str, port: int, public_url: str | None) -> tuple[str, list[str]]:
    """The URL clients are given in the pin file, and the names the TLS certificate must cover. Bound to every
    address (0.0.0.0, as in a container or behind NAT), the coordinator cannot know the name clients reach
    it by: `public_url` says it; without it the pin says 127.0.0.1 (clients on this machine only)."""
    if public_url is None:
        return f"https://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}", [host]
    parsed = urlparse(public_url)
    try:
        port_ok = parsed.port is None or parsed.port > 0
    except ValueError:  # a port that is not a number, or out of range
        port_ok = False
    if parsed.scheme != "https" or not parsed.hostname or not port_ok or parsed.path not in ("", "/") \
            or parsed.query:
        raise ValueError(f"the public URL {public_url!r} is not https://NAME[:PORT], the address clients reach this "
                         "coordinator at")
    return public_url.rstrip("/"), [host, parsed.hostname]


def serve(config: dict[str, Any], host: str, port: int, workers: int = 1, log_level: str = "info",
          log_format: str = "auto") -> None:
    """Run the coordinator under uvicorn with TLS (blocks until stopped). `log_format`: json, text, or auto
    (`observability.resolve_log_format`: text on a terminal, JSON otherwise)."""
    import uvicorn

    from uvicorn.config import LOGGING_CONFIG

    # The coordinator's own lines (round events, refused requests) go where uvicorn's go, in every worker.
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["ownrec"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    if observability.resolve_log_format(log_format) == "json":
        for name in ("default", "access"):
            log_config["formatters"][name] = {"()": "agent.server.observability.JsonFormatter"}
    logging.config.dictConfig(log_config)
    read_metrics_token(config.get("metrics_token_file"))  # a bad token file stops the start, not each worker
    state_dir = Path(config["state_dir"])
    url, names = public_address(host, port, config.get("public_url"))
    cert_path, key_path = ensure_tls_certificate(state_dir, names)
    coordinator = build_coordinator(config)  # initialises the database once, before the workers start
    parameters = coordinator.info()["parameters"]
    needed = coordinator.smallest_releasable_cohort(parameters)
    if needed is None or needed > coordinator.settings.max_cohort:
        settings = coordinator.settings
        floor = ("" if settings.max_round_epsilon is None else
                 f" and room for devices' privacy floor of epsilon {settings.max_round_epsilon:g} a round")
        log.warning("no cohort can be released alone: with %s shared numbers, clip norm %g and noise multiplier "
                    "%g%s, a release needs the updates of %s, and a cohort holds at most %d; so each release "
                    "combines the cohorts that run until together they have that many, and while fewer devices "
                    "than that are registered every cohort is withheld as it forms (--noise-multiplier, "
                    "--max-round-epsilon, or --release-noisy to publish noisy releases anyway)", f"{parameters:,}",
                    settings.clip_norm, settings.noise_multiplier, floor,
                    "more than 10,000,000 devices" if needed is None else f"{needed:,} devices",
                    settings.max_cohort)
    write_pin(state_dir, url, coordinator, cert_path)
    os.environ[ENVIRONMENT] = json.dumps(config)
    uvicorn.run("agent.server.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                ssl_certfile=str(cert_path), ssl_keyfile=str(key_path), log_level=log_level, log_config=log_config,
                access_log=False, timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_SECONDS)
