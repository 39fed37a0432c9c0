"""One offline harmonisation request, shared by ``kantor harmonize`` and ``POST /v1/harmonize``:
a melody plus the sampler's steering options in, a :class:`Harmonisation` out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings, Harmonisation
from kantor.engine.chorale.keys import KeyParseError, parse_key_or_sharps
from kantor.engine.chorale.melody import (
    Melody,
    MelodyError,
    fermatas_at_beats,
    fit_soprano_range,
    harmonize_melody,
    parse_fixed_note,
)

# Bounds that keep one request's CPU time and memory modest on a shared service.
MAX_ITERATIONS = 200
MAX_CHAINS = 16
MAX_FIXES = 256


@dataclass
class HarmonizeOptions:
    """What a user may steer; ``None`` keeps the sampler's tuned default."""

    iterations: int | None = None
    # where the annealing ends on the beat (off it: 1.0); not the live 'temperature'
    settle_temperature: float | None = None
    chains: int | None = None
    rule_weight: float | None = None  # nats per broken rule at the start (x4 by the end)
    seed: int = 0
    # The key, overriding the file's: "b minor", "Eb", "d dorian" (tonic, mode and the
    # usual signature), or a signature in sharps (the key is then read from the melody).
    key: int | str | None = None
    no_fermatas: bool = False
    fermatas: list[float] = field(default_factory=list)  # beats from 1
    fix: list[str] = field(default_factory=list)  # "bass@1=G2", see parse_fixed_note

    def gibbs_settings(self) -> GibbsSettings:
        """The sampler settings; MelodyError names the first option out of bounds."""
        settings = GibbsSettings(seed=int(self.seed))
        if self.iterations is not None:
            if not 1 <= self.iterations <= MAX_ITERATIONS:
                raise MelodyError(f"iterations must be 1-{MAX_ITERATIONS}")
            settings.iterations = int(self.iterations)
        if self.chains is not None:
            if not 1 <= self.chains <= MAX_CHAINS:
                raise MelodyError(f"chains must be 1-{MAX_CHAINS}")
            settings.chains = int(self.chains)
        if self.settle_temperature is not None:
            if not (math.isfinite(self.settle_temperature) and 0 < self.settle_temperature <= 5):
                raise MelodyError("settle_temperature must be above 0 and at most 5")
            settings.temperature_end = float(self.settle_temperature)
        if self.rule_weight is not None:
            if not (math.isfinite(self.rule_weight) and 0 <= self.rule_weight <= 100):
                raise MelodyError("rule weight must be 0-100 nats")
            settings.rule_weight = float(self.rule_weight)
        return settings


def prepare_melody(melody: Melody, options: HarmonizeOptions) -> Melody:
    """Apply the key and fermata overrides and fit the melody into the soprano range."""
    if options.key is not None:
        try:
            melody.key_sharps, melody.key = parse_key_or_sharps(options.key)
        except KeyParseError as error:
            raise MelodyError(str(error)) from None
    if options.no_fermatas or options.fermatas:
        melody.fermatas = None
    if options.fermatas:
        melody.fermatas = fermatas_at_beats(melody, options.fermatas)
    return fit_soprano_range(melody)


def harmonize(sampler: ChoraleSampler, melody: Melody, options: HarmonizeOptions
              ) -> tuple[Harmonisation, Melody]:
    """Harmonise ``melody`` as ``options`` say; MelodyError for bad options or melodies."""
    if len(options.fix) > MAX_FIXES:
        raise MelodyError(f"at most {MAX_FIXES} pinned notes")
    fixed = [parse_fixed_note(text) for text in options.fix]
    settings = options.gibbs_settings()
    melody = prepare_melody(melody, options)
    return harmonize_melody(sampler, melody, fixed, settings), melody
