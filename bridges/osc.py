"""OSC control of ``kantor serve`` over UDP (python-osc).

    /kantor/speak "text" [rate] [pitch]    speak on the service's output
    /kantor/speech/cancel                  silence it and forget the queue
    /kantor/live/panic                     note-offs for everything the harmoniser sounds
    /kantor/live/<parameter> value         temperature, lookahead, rule_weight,
                                           velocity_scale, thru, key_sharps
    /kantor/status                         replies /kantor/status with the status as JSON

Every message gets a reply to the address it came from: ``/kantor/ok`` (with what was
done) or ``/kantor/error "why"``. Datagrams that are not OSC, unknown addresses and bad
arguments are answered with an error and counted; the server goes on. With a token
configured, each message's first argument must be the token.
"""

from __future__ import annotations

import hmac
import json
import logging
import socketserver
import threading

from pythonosc import osc_packet
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_server import BlockingOSCUDPServer

from kantor.bridges.control import ControlError, Controls
from kantor.bridges.service import KantorService
from kantor.bridges.speech_service import SpeechRequest, SpeechRequestError
from kantor.engine.chorale.live import LIVE_PARAMETERS

log = logging.getLogger(__name__)

# A datagram is at most 64 KB, but a bundle of tiny messages could still ask for much work
MAX_MESSAGES_PER_PACKET = 64


class OscCommandError(ValueError):
    """A message the service cannot carry out; the text goes back to the sender."""


class _Handler(socketserver.BaseRequestHandler):
    """Parses every datagram itself, so that malformed ones are answered, not ignored."""

    def handle(self) -> None:
        data, sock = self.request
        server: OscServer = self.server.owner
        try:
            packet = osc_packet.OscPacket(data)
        except Exception as problem:  # ParseError, and whatever a hostile datagram raises
            server.service.count("osc malformed")
            self._reply(sock, "/kantor/error", [f"not an OSC packet: {problem}"])
            return
        if not packet.messages:  # a bundle of nothing still deserves an answer
            server.service.count("osc empty bundle")
            self._reply(sock, "/kantor/error", ["an OSC bundle without messages"])
            return
        for timed in packet.messages[:MAX_MESSAGES_PER_PACKET]:
            address, reply = server.dispatch(timed.message.address, list(timed.message.params))
            self._reply(sock, address, reply)
        if len(packet.messages) > MAX_MESSAGES_PER_PACKET:
            server.service.count("osc bundle too large")
            self._reply(sock, "/kantor/error", [f"only the first {MAX_MESSAGES_PER_PACKET} "
                                                "messages of a bundle are carried out"])

    def _reply(self, sock, address: str, arguments: list) -> None:
        try:
            sock.sendto(build_msg(address, arguments).dgram, self.client_address)
        except OSError as problem:  # the sender is gone: nothing to tell
            log.debug("OSC reply to %s failed: %s", self.client_address, problem)


class _Server(BlockingOSCUDPServer):
    def verify_request(self, request, client_address) -> bool:
        return True  # the handler answers malformed datagrams instead of dropping them


class OscServer:
    """Listens on ``config.osc_host:config.osc_port`` in a thread of its own."""

    def __init__(self, service: KantorService) -> None:
        self.service = Controls(service)  # the only door into the service
        config = self.service.config
        try:
            self.server = _Server((config.osc_host, config.osc_port), Dispatcher())
        except OSError as problem:
            raise OSError(f"cannot listen for OSC on {config.osc_host}:{config.osc_port}: "
                          f"{problem.strerror}") from None
        self.server.RequestHandlerClass = _Handler
        self.server.owner = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, name="kantor-osc",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (also when never started)."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(timeout=5)
        self.server.server_close()

    def dispatch(self, address: str, arguments: list) -> tuple[str, list]:
        """Carry out one message; (reply address, reply arguments)."""
        token = self.service.config.token
        if token is not None:
            presented = arguments[0] if arguments and isinstance(arguments[0], str) else ""
            if not hmac.compare_digest(presented.encode(), token.encode()):
                self.service.count("osc unauthorised")
                return "/kantor/error", ["this service needs the token as the first argument"]
            arguments = arguments[1:]
        try:
            result = self._command(address, arguments)
        except (OscCommandError, SpeechRequestError, ControlError) as problem:
            self.service.count("osc bad message")
            log.info("OSC %s %s refused: %s", address, arguments[:3], problem)
            return "/kantor/error", [f"{address}: {problem}"]
        except Exception as problem:  # a bug, not the sender's fault: answered, logged
            self.service.count("osc internal error")
            log.exception("OSC %s failed", address)
            return "/kantor/error", [f"{address}: internal error ({type(problem).__name__})"]
        log.debug("OSC %s %s", address, arguments[:3])
        return result

    def _command(self, address: str, arguments: list) -> tuple[str, list]:
        service = self.service
        if address == "/kantor/speak":
            if not arguments or not isinstance(arguments[0], str) or len(arguments) > 3:
                raise OscCommandError("takes a text, then optionally rate and pitch")
            numbers = arguments[1:]
            if not all(isinstance(n, int | float) and not isinstance(n, bool)
                       for n in numbers):
                raise OscCommandError("rate and pitch are numbers")
            request = SpeechRequest(arguments[0], *[float(n) for n in numbers])
            queued = service.speak(request)
            return "/kantor/ok", [address, queued["queued"], queued["dropped"]]
        if address == "/kantor/speech/cancel":
            service.cancel_speech()
            return "/kantor/ok", [address]
        if address == "/kantor/status":
            status = service.status()
            status.pop("models")  # cards are for HTTP: a UDP reply must stay small
            return "/kantor/status", [json.dumps(status, default=str)]
        if address.startswith("/kantor/live/"):
            name = address.removeprefix("/kantor/live/")
            if name == "panic":
                service.live_panic()
                return "/kantor/ok", [address]
            if name not in LIVE_PARAMETERS:
                raise OscCommandError(f"unknown live parameter (settable: "
                                      f"{', '.join(LIVE_PARAMETERS)}, or panic)")
            if len(arguments) != 1:
                raise OscCommandError("takes one value")
            value = service.live_setting(name, arguments[0])
            return "/kantor/ok", [address, int(value) if isinstance(value, bool) else value]
        raise OscCommandError("unknown address (see /kantor/speak, /kantor/speech/cancel, "
                              "/kantor/live/panic, /kantor/live/<parameter>, /kantor/status)")
