"""Settings of ``kantor serve``: defaults, then a TOML file, then command-line flags.

A TOML file groups them in tables; every key is optional::

    [http]      host = "127.0.0.1"   port = 8765
    [osc]       host = "127.0.0.1"   port = 9000      # port = 0: no OSC
    [security]  allow_remote = false token = "..."    # token also from $KANTOR_TOKEN
                allowed_hosts = ["kantor.local"]      # Host names besides loopback's
                allowed_origins = ["http://daw.local:3000"]  # pages that may call the API
    [midi]      api = "jack"  name = "kantor"  in_port = "..."  out_port = "..."
                start_jack = false  cpu = "last"       # or "any", or a core number
    [live]      temperature = 0.3  lookahead = 0  rule_weight = 4.0  velocity_scale = 0.85
                thru = true  channels = [1, 2, 3, 4]  melody_channel = 1  fermata_cc = 64
                key = 0  seed = 0  speculation = 96  tuned = false  tempo = 0.0
                move_under = false  beats_per_bar = 4  pickup = 0.0
    [speech]    enabled = true  device = "..."  hostapi = "jack"  blocksize = 1024
                sample_rate = 48000  clients = 4  queue_size = 64  max_chars = 5000
                drain_seconds = 0.0  vocoder = "auto"
    [limits]    max_body_bytes = 1000000  harmonize_waiting = 2
                header_timeout_s = 10.0  body_timeout_s = 30.0  ws_idle_s = 60.0
"""

from __future__ import annotations

import ipaddress
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

from kantor.bridges.scheduling import core_choice
from kantor.engine.chorale.live_settings import LIVE_PARAMETERS, LiveSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass
class ServeConfig:
    """Everything ``kantor serve`` can be told (the module docstring shows the file)."""

    host: str = "127.0.0.1"
    http_port: int = 8765
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000
    allow_remote: bool = False
    token: str | None = None
    allowed_hosts: list[str] | None = None  # Host header names besides loopback's and host
    allowed_origins: list[str] | None = None  # browser origins besides the status page's
    api: str | None = None
    midi_name: str = "kantor"
    in_port: str | None = None
    out_port: str | None = None
    start_jack: bool = False
    live_cpu: int | str = "last"  # the core the live process keeps to (scheduling.core_choice)
    # the live parameters' defaults (and ranges) are the live settings contract's
    temperature: float = LIVE_PARAMETERS["temperature"].default
    lookahead: int = LIVE_PARAMETERS["lookahead"].default
    rule_weight: float = LIVE_PARAMETERS["rule_weight"].default
    velocity_scale: float = LIVE_PARAMETERS["velocity_scale"].default
    thru: bool = LIVE_PARAMETERS["thru"].default
    channels: list[int] | None = None
    melody_channel: int | None = None
    fermata_cc: int = 64
    key: int = LIVE_PARAMETERS["key_sharps"].default
    seed: int = 0
    speculation: int = LIVE_PARAMETERS["speculation"].default
    tuned: bool = LIVE_PARAMETERS["tuned"].default
    tempo: float = LIVE_PARAMETERS["tempo"].default
    move_under: bool = LIVE_PARAMETERS["move_under"].default
    beats_per_bar: int = LIVE_PARAMETERS["beats_per_bar"].default
    pickup: float = LIVE_PARAMETERS["pickup"].default
    assets: str | None = None
    speech: bool = True
    device: str | int | None = None
    hostapi: str | None = None
    blocksize: int = 1024
    sample_rate: int | None = None
    speech_clients: int = 4
    speech_queue: int = 64
    max_chars: int = 5000
    drain_seconds: float = 0.0
    vocoder: str = "auto"  # neural when its model loads, else the WORLD-style one; or world
    max_body_bytes: int = 1_000_000
    harmonize_waiting: int = 2
    header_timeout_s: float = 10.0  # connecting (or last response) -> request headers
    body_timeout_s: float = 30.0  # longest pause inside a request body
    ws_idle_s: float = 60.0  # a streaming client silent this long gives its voice back
    verbose: bool = False

    def live_settings(self) -> dict:
        """Keyword arguments of :meth:`LiveSettings.checked` (channels counted from 0)."""
        channels = tuple(c - 1 for c in (self.channels or (1, 2, 3, 4)))
        return {"temperature": self.temperature, "lookahead": self.lookahead,
                "rule_weight": self.rule_weight, "channels": channels,
                "velocity_scale": self.velocity_scale, "thru": self.thru,
                "fermata_cc": self.fermata_cc, "key_sharps": self.key, "seed": self.seed,
                "speculation": self.speculation, "tuned": self.tuned, "tempo": self.tempo,
                "move_under": self.move_under, "beats_per_bar": self.beats_per_bar,
                "pickup": self.pickup,
                "melody_channel": None if self.melody_channel is None
                else self.melody_channel - 1}

    def check(self) -> None:
        """ConfigError for values that cannot work, and for a non-loopback address without
        both ``allow_remote`` and a token."""
        for name in ("http_port", "osc_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name.replace('_', ' ')} must be 0-65535")
        if self.http_port == 0:
            raise ConfigError("the HTTP port cannot be 0")
        for name, low, high in (("speech_clients", 1, 64), ("speech_queue", 1, 4096),
                                ("max_chars", 1, 1_000_000), ("blocksize", 0, 16384),
                                ("max_body_bytes", 1024, 100_000_000),
                                ("harmonize_waiting", 0, 64)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be {low}-{high}")
        if self.channels is not None and (len(self.channels) != 4 or not all(
                isinstance(c, int) and 1 <= c <= 16 for c in self.channels)):
            raise ConfigError("channels takes four MIDI channels 1-16 for S, A, T, B")
        try:  # the live settings by the same contract as every other way in
            LiveSettings.checked(**self.live_settings())
        except ValueError as error:
            raise ConfigError(str(error).replace("key_sharps", "key")) from None
        for name in ("header_timeout_s", "body_timeout_s", "ws_idle_s"):
            if not 0.1 <= getattr(self, name) <= 3600:
                raise ConfigError(f"{name} must be 0.1-3600 seconds")
        if self.drain_seconds < 0:
            raise ConfigError("drain_seconds must not be negative")
        try:
            self.live_cpu = core_choice(self.live_cpu)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.vocoder not in ("auto", "neural", "world"):
            raise ConfigError("vocoder must be auto, neural or world")
        remote = [h for h in (self.host, self.osc_host if self.osc_port else "127.0.0.1")
                  if not is_loopback(h)]
        if remote and not self.allow_remote:
            raise ConfigError(f"{remote[0]} is not a loopback address: anyone who can reach "
                              "it could control this service; pass --allow-remote and a "
                              "--token (or KANTOR_TOKEN) to mean it")
        if remote and not self.token:
            raise ConfigError("--allow-remote needs a token (--token or KANTOR_TOKEN): "
                              "clients then send 'Authorization: Bearer TOKEN'")
        for name in ("allowed_hosts", "allowed_origins"):
            values = getattr(self, name)
            if values is not None and not all(isinstance(v, str) and v for v in values):
                raise ConfigError(f"{name} takes a list of names")
        if self.token is not None and len(self.token) < 12:
            raise ConfigError("the token must be at least 12 characters")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: could resolve anywhere


def _toml_keys() -> dict[tuple[str, str], tuple[str, tuple[type, ...]]]:
    """(table, key) -> (field, accepted types), from the docstring's layout."""
    tables = {
        "http": {"host": "host", "port": "http_port"},
        "osc": {"host": "osc_host", "port": "osc_port"},
        "security": {"allow_remote": "allow_remote", "token": "token",
                     "allowed_hosts": "allowed_hosts", "allowed_origins": "allowed_origins"},
        "midi": {"api": "api", "name": "midi_name", "in_port": "in_port",
                 "out_port": "out_port", "start_jack": "start_jack", "cpu": "live_cpu"},
        "live": {k: k for k in ("temperature", "lookahead", "rule_weight", "velocity_scale",
                                "thru", "channels", "melody_channel", "fermata_cc", "key",
                                "seed", "speculation", "tuned", "tempo", "move_under",
                                "beats_per_bar", "pickup", "assets")},
        "speech": {"enabled": "speech", "device": "device", "hostapi": "hostapi",
                   "blocksize": "blocksize", "sample_rate": "sample_rate",
                   "clients": "speech_clients", "queue_size": "speech_queue",
                   "max_chars": "max_chars", "drain_seconds": "drain_seconds",
                   "vocoder": "vocoder"},
        "limits": {"max_body_bytes": "max_body_bytes",
                   "harmonize_waiting": "harmonize_waiting",
                   "header_timeout_s": "header_timeout_s", "body_timeout_s": "body_timeout_s",
                   "ws_idle_s": "ws_idle_s"},
        "logging": {"verbose": "verbose"},
    }
    hints = typing.get_type_hints(ServeConfig)
    keys = {}
    for table, entries in tables.items():
        for key, name in entries.items():
            kinds = tuple(typing.get_origin(k) or k for k in typing.get_args(hints[name])
                          if k is not type(None)) or (hints[name],)
            if float in kinds:
                kinds += (int,)  # TOML writes 1 for 1.0
            keys[(table, key)] = (name, kinds)
    return keys


def load_config(path: str | Path | None, overrides: dict) -> ServeConfig:
    """Defaults, then the TOML file at ``path`` (if any), then ``overrides`` (flags given
    on the command line; None values are skipped), then $KANTOR_TOKEN if no token yet."""
    config = ServeConfig()
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such settings file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"{path}: not a readable TOML file ({error})") from None
        keys = _toml_keys()
        for table, entries in data.items():
            if not isinstance(entries, dict):
                raise ConfigError(f"{path}: '{table}' must be a [table]")
            for key, value in entries.items():
                if (table, key) not in keys:
                    raise ConfigError(f"{path}: unknown setting [{table}] {key}")
                name, kinds = keys[(table, key)]
                if (isinstance(value, bool) and bool not in kinds) or not isinstance(
                        value, kinds):
                    raise ConfigError(f"{path}: [{table}] {key} takes "
                                      f"{' or '.join(k.__name__ for k in kinds)}, "
                                      f"not {type(value).__name__}")
                setattr(config, name, value)
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    if config.token is None and os.environ.get("KANTOR_TOKEN"):
        config.token = os.environ["KANTOR_TOKEN"]
    config.check()
    return config
