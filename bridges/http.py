"""HTTP and WebSocket control of ``kantor serve`` (FastAPI, served by uvicorn).

    GET  /                    status page (plain HTML + JS)
    GET  /v1/status           ports, models and their cards, latency, drops, underflows
    GET  /metrics             the same as Prometheus text
    POST /v1/speak            {"text", "rate", "pitch", "phonemes"} -> spoken on the output
    POST /v1/speech/cancel    silence the output, forget the queue
    POST /v1/live/settings    {"temperature": 0.5, ...} -> the live parameters
    POST /v1/live/panic       note-offs for everything the harmoniser sounds
    GET  /v1/live/latencies   the latest live latencies per answered message (?kind=note_on)
    GET  /v1/live/explain     why a voice sang its note in the last live chord
    POST /v1/harmonize        a melody file as the body (MIDI or MusicXML) -> a chorale
    WS   /v1/speech/stream    text in; a JSON header, binary PCM frames, a JSON trailer out
    GET  /openapi.json, /docs the schema

Errors are JSON ``{"error": "..."}`` with a fitting status, each counted in the status.
With a token configured every request needs ``Authorization: Bearer TOKEN`` (WebSocket:
that header or ``?token=``), except the status page itself, which carries no data.

Web pages cannot drive the service: the Host header must name this machine (loopback, the
bound address or ``allowed_hosts``: no DNS rebinding), an Origin header must be the
service's own (or in ``allowed_origins``), and a POST must carry a Content-Type that a web
form cannot send (``application/json``; for ``/v1/harmonize`` the file's type, e.g.
``audio/midi``), so a cross-site page cannot make one without the browser asking first.

No client can starve the others: request headers must arrive within ``header_timeout_s``
and a body may not stall longer than ``body_timeout_s`` (settings, 10 and 30 s); past
``MAX_CONNECTIONS`` open connections the oldest idle one is closed to make room; WebSocket
clients that send nothing for ``ws_idle_s`` (60 s) or stop reading for
``WS_SEND_TIMEOUT_S`` lose their voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
import time
from importlib import resources
from typing import Annotated, Literal

import uvicorn
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from kantor.bridges.control import ControlError, Controls
from kantor.bridges.harmonizing import HarmonizeOptions
from kantor.bridges.metrics import CONTENT_TYPE, render
from kantor.bridges.service import KantorService
from kantor.bridges.speech_service import STREAM_RATES, SpeechRequest, SpeechRequestError

log = logging.getLogger(__name__)

SPEECH_BODY_BYTES = 64 * 1024  # JSON bodies other than uploads
WS_MESSAGE_BYTES = 64 * 1024
STREAM_QUEUE_CHUNKS = 32  # PCM chunks between the synthesis thread and the socket
MEDIA_TYPES = {"midi": "audio/midi", "musicxml": "application/vnd.recordare.musicxml+xml"}
MAX_CONNECTIONS = 192  # open HTTP connections before idle ones are closed for new ones
HARD_CONNECTION_LIMIT = 256  # busy connections beyond this get 503 (uvicorn)
WS_SEND_TIMEOUT_S = 5.0  # a client that reads nothing this long is dropped
# Content types a web form (or a "simple" cross-site fetch) can send without a preflight
SIMPLE_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data",
                        "text/plain")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class SpeakBody(BaseModel):
    """Text to speak on the service's audio output."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="English text; with phonemes=true, ARPAbet phones")
    rate: float = Field(1.0, description="speaking rate multiplier (0.25-4)")
    pitch: float = Field(1.0, description="pitch multiplier (0.25-4)")
    phonemes: bool = Field(False, description="the text is ARPAbet ('HH AH0 L OW1')")


class BodyLimit:
    """ASGI middleware: refuse request bodies over the limit (413) before any handler
    reads them, whether the client declared the length or not."""

    def __init__(self, app, controls: Controls) -> None:
        self.app = app
        self.controls = controls

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.controls.config.max_body_bytes if scope["path"] == "/v1/harmonize" \
            else SPEECH_BODY_BYTES
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, receive, send, limit)
            return
        chunks, size = [], 0
        timeout = self.controls.config.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                self.controls.count("http body timeout")
                await error(408, f"the request body stalled for {timeout:g} s")(
                    scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, limit: int) -> None:
        self.controls.count("http body too large")
        await error(413, f"request body over {limit} bytes")(scope, receive, send)


def _host_name(value: str) -> str:
    """The name of a Host header or origin authority, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class BrowserGuard:
    """ASGI middleware: refuse requests a web page could make on a visitor's behalf. The
    Host must name this machine (DNS rebinding), an Origin must be allowed, and POSTs need
    a Content-Type a form cannot send. Refusals are 403/415 JSON errors, counted; refused
    WebSocket handshakes get 403."""

    def __init__(self, app, controls: Controls) -> None:
        self.app = app
        self.controls = controls
        config = controls.config
        self.hosts = {*LOOPBACK_NAMES, config.host.lower(), *(h.lower() for h in
                                                              config.allowed_hosts or ())}
        self.origins = {o.lower().rstrip("/") for o in config.allowed_origins or ()}
        for name in (*LOOPBACK_NAMES, config.host, *(config.allowed_hosts or ())):
            authority = f"[{name}]" if ":" in name else name
            self.origins.add(f"http://{authority}:{config.http_port}".lower())

    def problem(self, scope) -> tuple[int, str, str] | None:
        """(status, counter, message) for a request to refuse, else None."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        if host is not None and _host_name(host) not in self.hosts:
            return (403, "foreign host", f"Host '{host[:100]}' is not this service's name "
                    "(add it to allowed_hosts to serve it)")
        origin = headers.get("origin")
        if origin is not None and origin.lower().rstrip("/") not in self.origins:
            return (403, "foreign origin", f"requests from pages at '{origin[:100]}' are not "
                    "allowed (add it to allowed_origins to allow it)")
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if not media or media in SIMPLE_CONTENT_TYPES:
                return (415, "simple content type", "send Content-Type: application/json "
                        "(for /v1/harmonize the file's type, e.g. audio/midi): a web form "
                        f"cannot, so no page can post here for its visitor (got '{media}')")
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.problem(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, counter, message = refused
        self.controls.count(f"{'ws' if scope['type'] == 'websocket' else 'http'} {counter}")
        log.info("refused %s %s: %s", scope["type"], scope["path"], message)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect; closing before accepting answers 403
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        await error(status, message)(scope, receive, send)


def authorised(headers, query_token: str | None, token: str | None) -> bool:
    """Whether a request may proceed: no token configured, or it presents the token."""
    if token is None:
        return True
    presented = query_token or ""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        presented = header[7:].strip()
    return hmac.compare_digest(presented.encode(), token.encode())


def create_app(controls: Controls) -> FastAPI:
    """The FastAPI application: every request reaches the service through ``controls``."""
    app = FastAPI(title="Kantor", version="1.0",
                  description="Live chorale harmoniser and streaming speech, as a service.")
    app.state.streams = set()  # cancel events of the streams running now
    token = controls.config.token
    page = resources.files("kantor.bridges").joinpath("static/index.html").read_text()

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        started = time.perf_counter()
        if request.url.path != "/" and not authorised(request.headers, None, token):
            controls.count("http unauthorised")
            return error(401, "this service needs 'Authorization: Bearer TOKEN'")
        try:
            response = await call_next(request)
        except Exception as problem:  # a bug, not the client's fault: logged, counted
            log.exception("%s %s failed", request.method, request.url.path)
            response = error(500, f"internal error ({type(problem).__name__}); see the "
                                  "service's log")
        if response.status_code >= 400:
            controls.count(f"http {response.status_code}")
        log.debug("%s %s -> %d in %.1f ms", request.method, request.url.path,
                  response.status_code, (time.perf_counter() - started) * 1000)
        return response

    app.add_middleware(BodyLimit, controls=controls)
    app.add_middleware(BrowserGuard, controls=controls)  # outermost: before any body is read

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException):
        # Starlette's own refusals (404, 405, a body that is not JSON) in the same shape
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        return error(422, f"invalid request: {problems}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def status_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/v1/status", summary="Ports, models, latency percentiles, drops, underflows")
    def get_status() -> dict:
        return controls.status()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(render(controls.status), media_type=CONTENT_TYPE)

    @app.exception_handler(ControlError)
    async def refused(request: Request, exc: ControlError):
        return error(exc.status, str(exc))

    @app.post("/v1/speak", status_code=202, summary="Speak text on the service's output")
    def speak(body: SpeakBody) -> dict:
        return controls.speak(SpeechRequest(body.text, body.rate, body.pitch, body.phonemes))

    @app.post("/v1/speech/cancel", summary="Silence the output and forget queued speech")
    def cancel_speech() -> dict:
        controls.cancel_speech()
        return {"cancelled": True}

    @app.post("/v1/live/settings", summary="Set live harmoniser parameters")
    def live_settings(parameters: dict[str, float | int | bool | str]) -> dict:
        return controls.live_settings(**parameters)

    @app.get("/v1/live/latencies", summary="The live harmoniser's latest latencies (ms)")
    def live_latencies(last: Annotated[int, Query(ge=1, le=65536)] = 1000,
                       kind: Annotated[Literal["all", "note_on"], Query()] = "all") -> dict:
        """Arrival to answers sent, per answered MIDI message (``kind=note_on``: per
        note-on, whose answer is the chord), oldest first; ``count`` is how many were
        answered since the start (so a client can tell which are new)."""
        return controls.live_latencies(last, kind)

    @app.get("/v1/live/explain", summary="Why a voice sang its note in the last live chord")
    def live_explain(voice: Annotated[str, Query(max_length=16)] = "bass") -> dict:
        """Integrated-gradients attribution of the voice's choice over the notes its
        network read (baseline: every note hidden; ``cells_nats`` [voice][step], steps
        relative to the chord; ``top``: the cells that drove it most)."""
        return controls.live_explain(voice)

    @app.post("/v1/live/panic", summary="Release every note the harmoniser sounds")
    def live_panic() -> dict:
        controls.live_panic()
        return {"panic": True}

    @app.post("/v1/harmonize", summary="Harmonise a melody (MIDI or MusicXML body)",
              response_class=Response,
              responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
    async def harmonize_melody(
            request: Request,
            input: Annotated[str | None, Query(pattern="^(midi|musicxml)$",
                                               description="default: from the bytes")] = None,
            output: Annotated[str, Query(pattern="^(midi|musicxml)$")] = "midi",
            iterations: Annotated[int | None, Query(ge=1)] = None,
            settle_temperature: Annotated[float | None, Query(gt=0, description=(
                "where the annealing ends on the beat (default 0.5)"))] = None,
            temperature: Annotated[float | None, Query(gt=0, deprecated=True, description=(
                "the old name of settle_temperature"))] = None,
            chains: Annotated[int | None, Query(ge=1)] = None,
            rule_weight: Annotated[float | None, Query(ge=0)] = None,
            seed: int = 0,
            key: Annotated[str | None, Query(max_length=32, description=(
                "'b minor', 'Eb major', 'd dorian', or a signature in sharps"))] = None,
            no_fermatas: bool = False,
            fermata: Annotated[list[float], Query(description="beats from 1")] = [],  # noqa: B006
            fix: Annotated[list[str], Query(description="e.g. bass@1=G2")] = []):  # noqa: B006
        data = await request.body()
        kind = input or sniff_melody(data)
        if kind is None:
            return error(415, "the body is neither a Standard MIDI File nor MusicXML "
                              "(compressed .mxl is not supported: send the .musicxml)")
        if settle_temperature is None:
            settle_temperature = temperature
        options = HarmonizeOptions(iterations=iterations, settle_temperature=settle_temperature,
                                   chains=chains, rule_weight=rule_weight, seed=seed, key=key,
                                   no_fermatas=no_fermatas, fermatas=fermata, fix=fix)
        body, summary = await run_in_threadpool(controls.harmonize, data, kind, output,
                                                options)
        headers = {"X-Kantor-Rule-Breaks": str(summary["rule_breaks"]),
                   "X-Kantor-Seconds": f"{summary['seconds']:.3f}",
                   "X-Kantor-Warnings": json.dumps(summary["warnings"], ensure_ascii=True)}
        return Response(body, media_type=MEDIA_TYPES[output], headers=headers)

    @app.websocket("/v1/speech/stream")
    async def speech_stream(websocket: WebSocket) -> None:
        await _speech_stream(websocket, controls, app.state.streams)

    return app


def sniff_melody(data: bytes) -> str | None:
    """'midi', 'musicxml' or None, from a file's first bytes."""
    if data.startswith(b"MThd"):
        return "midi"
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") and (b"score-partwise" in data[:4096]
                                  or b"score-timewise" in data[:4096]):
        return "musicxml"
    return None


def parse_stream_request(text: str, max_chars: int) -> tuple[SpeechRequest, int]:
    """A WebSocket text message: plain text, or JSON ``{"text", "rate", "pitch",
    "phonemes", "sample_rate"}``. SpeechRequestError saying what is wrong."""
    rate = None
    if text.lstrip().startswith("{"):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as problem:
            raise SpeechRequestError(f"malformed JSON: {problem}") from None
        except (RecursionError, ValueError) as problem:  # nesting, 5000-digit numbers
            raise SpeechRequestError(f"malformed JSON: {type(problem).__name__}") from None
        if not isinstance(fields, dict):
            raise SpeechRequestError("a JSON request is an object: {\"text\": ...}")
        unknown = set(fields) - {"text", "rate", "pitch", "phonemes", "sample_rate"}
        if unknown:
            raise SpeechRequestError(f"unknown field(s): {', '.join(sorted(unknown))}")
        rate = fields.get("sample_rate")
        request = SpeechRequest(fields.get("text"), fields.get("rate", 1.0),
                                fields.get("pitch", 1.0), fields.get("phonemes", False))
        if not isinstance(request.phonemes, bool):
            raise SpeechRequestError("phonemes must be true or false")
    else:
        request = SpeechRequest(text)
    request.check(max_chars)
    if rate is not None and rate not in STREAM_RATES:
        raise SpeechRequestError(f"sample_rate must be one of {STREAM_RATES}")
    return request, rate


async def _speech_stream(websocket: WebSocket, controls: Controls, streams: set) -> None:
    """One client connection: any number of requests, one at a time."""
    config = controls.config
    await websocket.accept()  # then refuse with a reason a browser can read
    if not authorised(websocket.headers, websocket.query_params.get("token"), config.token):
        controls.count("ws unauthorised")
        await websocket.send_json({"type": "error", "error": "this service needs the token "
                                   "('Authorization: Bearer TOKEN' or ?token=TOKEN)"})
        await websocket.close(code=1008, reason="token required")
        return
    voice = controls.acquire_voice()
    if voice is None:
        await websocket.send_json({"type": "error", "error": "every streaming voice is busy "
                                   f"({config.speech_clients} clients); try again later"})
        await websocket.close(code=1013, reason="busy")
        return
    pending = None  # a receive started while streaming, carried to the next request
    try:
        while True:
            try:  # an idle client must not hold a voice for ever
                message = await asyncio.wait_for(pending or websocket.receive(),
                                                 config.ws_idle_s)
            except asyncio.TimeoutError:
                controls.count("ws idle")
                await _close_quietly(websocket, 1000, f"idle for {config.ws_idle_s:g} s")
                return
            pending = None
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                controls.count("ws binary message")
                await websocket.send_json({"type": "error", "error": "send text or JSON "
                                           "text messages, not binary"})
                continue
            received = time.perf_counter()
            if text.strip().lower() in ("cancel", '{"cancel": true}', '{"cancel":true}'):
                await websocket.send_json({"type": "cancelled", "active": False})
                continue
            try:
                request, rate = parse_stream_request(text, config.max_chars)
                # bounded audio: normalising 5000 characters takes a few ms, off the loop
                await run_in_threadpool(controls.check_length, request)
            except (SpeechRequestError, ControlError) as problem:
                controls.count("ws bad request")
                await websocket.send_json({"type": "error", "error": str(problem)})
                continue
            pending = await _stream_one(websocket, controls, voice, request,
                                        rate or voice.sample_rate, received, streams)
            if pending is False:  # the client went away mid-stream
                return
    except WebSocketDisconnect:
        return
    finally:
        controls.release_voice(voice)


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    """Close, bounded in time, whatever state the client left the socket in."""
    with contextlib.suppress(asyncio.TimeoutError, RuntimeError, OSError, WebSocketDisconnect):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), WS_SEND_TIMEOUT_S)


async def _stream_one(websocket: WebSocket, controls: Controls, voice, request,
                      rate: int, received: float, streams: set):
    """Stream one request; returns a receive task still pending (or None, or False when the
    client disconnected)."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue = asyncio.Queue(maxsize=STREAM_QUEUE_CHUNKS)
    cancelled = threading.Event()
    streams.add(cancelled)
    done = object()

    def produce() -> None:
        item = done
        try:
            for pcm in controls.stream_pcm(voice, request, rate, cancelled):
                asyncio.run_coroutine_threadsafe(chunks.put(pcm), loop).result()
        except Exception as problem:  # the voice refused the text (e.g. bad phonemes)
            item = problem
        asyncio.run_coroutine_threadsafe(chunks.put(item), loop).result()

    await websocket.send_json({"type": "start", "sample_rate": rate, "channels": 1,
                               "format": "pcm_s16le"})
    producer = threading.Thread(target=produce, name="kantor-ws-speech", daemon=True)
    producer.start()
    listener = asyncio.ensure_future(websocket.receive())
    samples = chunk_count = 0
    first_audio = None
    failure = None
    gone = client_cancelled = False
    try:
        while True:
            getter = asyncio.ensure_future(chunks.get())
            finished, _ = await asyncio.wait({getter, listener},
                                             return_when=asyncio.FIRST_COMPLETED)
            if listener in finished:
                message = listener.result()
                if message["type"] == "websocket.disconnect":
                    gone = True
                    cancelled.set()
                elif (message.get("text") or "").strip().lower() in (
                        "cancel", '{"cancel": true}', '{"cancel":true}'):
                    client_cancelled = True
                    cancelled.set()
                else:
                    await websocket.send_json({"type": "error", "error": "one request at "
                                               "a time: wait for the end, or send cancel"})
                if gone:
                    getter.cancel()  # a chunk it may hold is dropped with the rest
                    listener = None
                    break
                listener = asyncio.ensure_future(websocket.receive())
            if getter not in finished:
                getter.cancel()
                continue
            item = getter.result()
            if item is done:
                break
            if isinstance(item, Exception):
                failure = item
                break
            if not gone and not cancelled.is_set():
                if first_audio is None:
                    first_audio = time.perf_counter() - received
                try:  # a client that stops reading fills its socket: drop it
                    await asyncio.wait_for(websocket.send_bytes(item), WS_SEND_TIMEOUT_S)
                except asyncio.TimeoutError:
                    controls.count("ws not reading")
                    gone = True
                    cancelled.set()
                    if listener is not None:
                        listener.cancel()
                        listener = None
                    break
                samples += len(item) // 2
                chunk_count += 1
    finally:
        cancelled.set()
        streams.discard(cancelled)
        while producer.is_alive():  # let a producer blocked on a full queue finish
            try:
                chunks.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.001)
    total = time.perf_counter() - received
    controls.record_stream(first_audio, cancelled=client_cancelled or gone,
                           failed=failure is not None)
    if gone:
        return False
    if failure is not None:
        controls.count("ws synthesis failed")
        await websocket.send_json({"type": "error", "error": str(failure)})
    else:
        await websocket.send_json({
            "type": "end", "samples": samples, "chunks": chunk_count, "sample_rate": rate,
            "cancelled": client_cancelled,
            "audio_seconds": samples / rate,
            "first_audio_ms": None if first_audio is None else first_audio * 1000,
            "total_ms": total * 1000})
    log.debug("streamed %d samples in %d chunks; first audio %s ms, total %.1f ms",
              samples, chunk_count, "-" if first_audio is None
              else f"{first_audio * 1000:.1f}", total * 1000)
    return listener


def guarded_protocol(controls: Controls) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, with a deadline for request headers and a cap on open
    connections that closes the oldest idle one instead of refusing newcomers: connections
    that never send a byte (or dribble their headers) cannot occupy the service."""

    class GuardedH11Protocol(H11Protocol):
        idle_since: float = 0.0
        upgraded = False  # handed to the WebSocket protocol: its own timeouts apply

        @property
        def idle(self) -> bool:
            """No request in progress (none started, or the last one answered)."""
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.idle_since = time.monotonic()
            self._expect_headers()
            open_http = [c for c in self.connections if isinstance(c, GuardedH11Protocol)]
            if len(open_http) > MAX_CONNECTIONS:
                idle = sorted((c for c in open_http if c.idle and c is not self),
                              key=lambda c: c.idle_since)
                for connection in idle[:len(open_http) - MAX_CONNECTIONS]:
                    controls.count("http idle connection closed for a new one")
                    connection.transport.close()

        def handle_websocket_upgrade(self, event) -> None:
            self.upgraded = True
            super().handle_websocket_upgrade(event)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.idle_since = time.monotonic()
            self._expect_headers()

        def _expect_headers(self) -> None:
            """Close the connection if no new request's headers are complete in time
            (uvicorn's keep-alive timer stops at the first byte; this one does not)."""
            waiting_after = self.cycle

            def deadline() -> None:
                if self.cycle is waiting_after and self.idle and not self.upgraded \
                        and not self.transport.is_closing():
                    controls.count("http header timeout")
                    self.transport.close()

            self.loop.call_later(controls.config.header_timeout_s, deadline)

    return GuardedH11Protocol


class HttpServer:
    """uvicorn serving the app from a thread, on a socket bound before "ready"."""

    def __init__(self, service: KantorService) -> None:
        config = service.config
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        # proto given explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets
        # that say IPPROTO_TCP, and Nagle holds a small PCM frame back ~10 ms
        self.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((config.host, config.http_port))
        except OSError as problem:
            self.socket.close()
            raise OSError(f"cannot listen for HTTP on {config.host}:{config.http_port}: "
                          f"{problem.strerror}") from None
        controls = Controls(service)
        self.app = create_app(controls)
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, log_level="info" if config.verbose else "warning",
            access_log=config.verbose, ws_max_size=WS_MESSAGE_BYTES, lifespan="off",
            timeout_graceful_shutdown=2, limit_concurrency=HARD_CONNECTION_LIMIT,
            http=guarded_protocol(controls)))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]},
                                       name="kantor-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError("the HTTP server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (open streams end at their next chunk) and close the socket."""
        if self.thread.is_alive():
            for cancelled in list(self.app.state.streams):
                cancelled.set()
            self.server.should_exit = True
            self.thread.join(timeout=10)
        self.socket.close()
