"""The live harmoniser's settings contract: one table, one range and one default each.

Every way a setting reaches the live harmoniser goes through :data:`LIVE_PARAMETERS`:
``kantor live`` and ``kantor serve`` flags, the ``[live]`` table of the TOML file, HTTP
``/v1/live/settings``, OSC ``/kantor/live/<name>`` and MIDI control changes (a controller
sweeps the parameter's whole range). :class:`LiveSettings` takes its defaults from the
table, and :meth:`LiveSettings.checked` validates a whole set of values once, with errors
that name the setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from kantor.engine.chorale.encoding import STEPS_PER_QUARTER

Value = float | int | bool


@dataclass(frozen=True)
class LiveParameter:
    """A setting a musician may change while playing.

    ``kind`` is float, int or bool; values lie in ``low``..``high`` (bool: 0..1).
    ``cc``: the MIDI controller that sets it (None: none); a controller's 0-127 sweeps
    ``low``..``high`` unless ``from_controller`` maps it otherwise.
    """

    name: str
    kind: type
    low: float
    high: float
    default: Value
    help: str
    cc: int | None = None
    from_controller: Callable[[int], Value] | None = None

    def check(self, value: object, high: float | None = None) -> Value:
        """``value`` converted to this parameter's kind; ValueError saying what is allowed
        otherwise. ``high`` narrows the upper bound (e.g. the model's longest lookahead)."""
        high = self.high if high is None else high
        if self.kind is bool:
            if isinstance(value, str):
                value = {"true": 1, "on": 1, "1": 1, "false": 0, "off": 0, "0": 0}.get(
                    value.lower(), value)
            if value not in (0, 1):  # True/False compare equal to 1/0
                raise ValueError(f"{self.name} is on/off (true/false or 1/0), not {value!r}")
            return bool(value)
        if isinstance(value, bool):
            raise ValueError(f"{self.name} takes a number, not {value!r}")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} takes a number, not {value!r}") from None
        if not self.low <= number <= high or (self.kind is int and number != int(number)):
            kind_name = "a whole number" if self.kind is int else "a number"
            raise ValueError(f"{self.name} takes {kind_name} from {self.low:g} to {high:g}, "
                             f"not {value!r}")
        return int(number) if self.kind is int else number

    def controller_value(self, value: int) -> Value:
        """The setting a control change's ``value`` (0-127) asks for."""
        if self.from_controller is not None:
            return self.from_controller(value)
        if self.kind is bool:
            return value >= 64
        if self.kind is int:
            return int(min(max(value, self.low), self.high))
        return round(self.low + value / 127 * (self.high - self.low), 3)

    def describe(self) -> str:
        """Help text with the range, the default and the controller, for flags and docs."""
        bounds = "on/off" if self.kind is bool else f"{self.low:g}-{self.high:g}"
        controller = f"; CC {self.cc}" if self.cc is not None else ""
        return f"{self.help} ({bounds}, default {self.default}{controller})"


def _circle_of_fifths(value: int) -> int:
    """CC 25: 0-6 sharps, 7-11 five to one flats (the value taken modulo 12)."""
    return (value % 12) - 12 if value % 12 > 6 else value % 12


def _sixteenths(value: int) -> float:
    """CC 31: the pickup in 16ths (4 = one beat), at most 31."""
    return min(value, 31) / STEPS_PER_QUARTER


LIVE_PARAMETERS: dict[str, LiveParameter] = {p.name: p for p in (
    LiveParameter("temperature", float, 0.0, 2.0, 0.3,
                  "0 = always the likeliest answer; higher = more adventurous", cc=20),
    LiveParameter("lookahead", int, 0, 64, 0,
                  "steps (16ths) the melody is sent early, under MIDI clock; at most the "
                  "model's own limit", cc=21),
    LiveParameter("velocity_scale", float, 0.0, 1.5, 0.85,
                  "lower voices' velocity relative to the melody's", cc=22),
    LiveParameter("thru", bool, 0, 1, True, "echo the melody on the soprano channel", cc=23),
    LiveParameter("rule_weight", float, 0.0, 20.0, 4.0,
                  "nats charged per voice-leading rule broken", cc=24),
    LiveParameter("key_sharps", int, -7, 7, 0,
                  "key signature in sharps (- = flats)", cc=25,
                  from_controller=_circle_of_fifths),
    LiveParameter("minor", bool, 0, 1, False, "the minor mode of the signature's key", cc=26),
    LiveParameter("tuned", bool, 0, 1, True,
                  "play the networks tuned by reinforcement learning on the voice-leading "
                  "rules (Sequence Tutor), where installed; off: the prior, trained on Bach "
                  "alone", cc=27),
    LiveParameter("tempo", float, 0.0, 300.0, 0.0,
                  "quarter notes a minute the melody is played at without MIDI clock, "
                  "which places each note in the beat (below 40 counts as 40); 0: follow "
                  "the player's own timing", cc=28),
    LiveParameter("move_under", bool, 0, 1, True,
                  "without MIDI clock and with the tempo set, let the lower voices move "
                  "(passing notes, suspensions) under a held melody note, each 16th, and "
                  "sound on through a legato gap; off (or the tempo followed): they "
                  "change only with the melody", cc=29),
    LiveParameter("beats_per_bar", int, 1, 8, 4,
                  "quarter-note beats in a bar (3 for 3/4), so the networks know where "
                  "the bar lines fall", cc=30),
    LiveParameter("pickup", float, 0.0, 7.75, 0.0,
                  "without MIDI clock, quarter-note beats the melody's first note comes "
                  "before a bar line (a hymn starting on the fourth beat of 4/4: 1; 0: on "
                  "a downbeat; the controller counts 16ths); under clock the song "
                  "position places the bar lines",
                  cc=31, from_controller=_sixteenths),
    LiveParameter("speculation", int, 0, 256, 96,
                  "answers computed ahead per step while waiting for the next note (0: "
                  "none); the music is the same, more covers rarer notes at more idle CPU"),
)}
CC_PARAMETERS: dict[int, LiveParameter] = {p.cc: p for p in LIVE_PARAMETERS.values()
                                           if p.cc is not None}


def _default(name: str) -> Value:
    return LIVE_PARAMETERS[name].default


@dataclass
class LiveSettings:
    """What a musician can change while playing (flags, the TOML file, HTTP, OSC, CCs).

    The settable ones (:data:`LIVE_PARAMETERS`) take their defaults from that table; use
    :meth:`checked` to build settings from a user's values.
    """

    temperature: float = _default("temperature")  # 0 = always the most likely answer
    lookahead: int = _default("lookahead")  # steps of melody known ahead (clock mode)
    rule_weight: float = _default("rule_weight")  # nats per voice-leading rule broken
    channels: tuple[int, int, int, int] = (0, 1, 2, 3)  # output channel of S, A, T, B (0-15)
    velocity_scale: float = _default("velocity_scale")  # lower voices' velocity share
    thru: bool = _default("thru")  # echo the melody on the soprano channel
    fermata_cc: int = 64  # held down = fermata (sustain pedal by default)
    melody_channel: int | None = None  # None: any input channel is the melody
    key_sharps: int = _default("key_sharps")  # key signature the networks are told
    minor: bool = _default("minor")  # the mode (CC 26)
    # The tonic in semitones above the signature's major tonic; None: 0 in major, 9 (the
    # relative minor) in minor. Set for modal keys, e.g. D Dorian with no sharps is 2.
    tonic_degree: int | None = None
    beats_per_bar: int = _default("beats_per_bar")  # quarter notes a bar
    pickup: float = _default("pickup")  # quarters the first note comes before a bar line
    seed: int = 0
    # Answers computed ahead per step while waiting for the next note (0: none). More
    # covers rarer notes at more idle CPU; the answers are the same either way.
    speculation: int = _default("speculation")
    tuned: bool = _default("tuned")  # the RL-tuned networks, where loaded
    tempo: float = _default("tempo")  # bpm of the melody in event mode; 0: followed
    move_under: bool = _default("move_under")  # event mode: 16ths decided under a held note

    @property
    def steps_per_bar(self) -> int:
        """16ths in a bar."""
        return self.beats_per_bar * STEPS_PER_QUARTER

    @property
    def pickup_steps(self) -> int:
        """16ths the first note comes before a bar line."""
        return round(self.pickup * STEPS_PER_QUARTER)

    @classmethod
    def checked(cls, **values: object) -> LiveSettings:
        """Settings from a user's ``values`` (None = the default), every one checked:
        ValueError naming the first setting that cannot be used."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown live setting '{unknown[0]}'")
        given = {name: value for name, value in values.items() if value is not None}
        for name, value in given.items():
            if name in LIVE_PARAMETERS:
                given[name] = LIVE_PARAMETERS[name].check(value)
        channels = given.get("channels", (0, 1, 2, 3))
        if len(channels) != 4 or not all(isinstance(c, int) and 0 <= c <= 15
                                         for c in channels):
            raise ValueError("channels takes four MIDI channels 1-16 for S, A, T, B")
        given["channels"] = tuple(channels)
        melody = given.get("melody_channel")
        if melody is not None and (isinstance(melody, bool) or not isinstance(melody, int)
                                   or not 0 <= melody <= 15):
            raise ValueError("the melody channel is a MIDI channel 1-16")
        for name, low, high in (("fermata_cc", 0, 127), ("tonic_degree", 0, 11)):
            value = given.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not low <= value <= high):
                raise ValueError(f"{name} takes a whole number from {low} to {high}, "
                                 f"not {value!r}")
        if "seed" in given and (isinstance(given["seed"], bool)
                                or not isinstance(given["seed"], int)):
            raise ValueError(f"seed takes a whole number, not {given['seed']!r}")
        return cls(**given)
