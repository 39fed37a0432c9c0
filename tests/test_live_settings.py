"""The live settings contract: one range and one default per parameter, whichever way a
setting comes in (flags, TOML, HTTP/OSC through check_parameter, MIDI control changes)."""

from __future__ import annotations

import dataclasses

import pytest

from kantor.bridges.serve_config import ConfigError, ServeConfig, load_config
from kantor.engine.chorale.live_settings import CC_PARAMETERS, LIVE_PARAMETERS, LiveSettings


def test_every_default_lies_in_its_range_and_is_the_settings_default():
    defaults = LiveSettings()
    for name, parameter in LIVE_PARAMETERS.items():
        assert parameter.check(parameter.default) == parameter.default
        assert getattr(defaults, name) == parameter.default
    serve = ServeConfig()
    for name in ("temperature", "lookahead", "rule_weight", "velocity_scale", "speculation",
                 "thru"):
        assert getattr(serve, name) == LIVE_PARAMETERS[name].default


@pytest.mark.parametrize("name", [n for n, p in LIVE_PARAMETERS.items()
                                  if p.kind is float])
def test_a_controller_sweeps_exactly_the_range_the_other_ways_accept(name):
    parameter = LIVE_PARAMETERS[name]
    assert parameter.cc in CC_PARAMETERS
    values = [parameter.controller_value(v) for v in range(128)]
    assert values[0] == parameter.low and values[127] == parameter.high
    assert values == sorted(values)
    for value in values:  # whatever a CC sets, HTTP/OSC/flags would accept too
        assert parameter.check(value) == value


def test_controllers_for_steps_keys_and_switches():
    assert LIVE_PARAMETERS["lookahead"].controller_value(127) == 64
    assert LIVE_PARAMETERS["key_sharps"].controller_value(7) == -5  # 7 -> five flats
    assert LIVE_PARAMETERS["key_sharps"].controller_value(2) == 2
    assert LIVE_PARAMETERS["thru"].controller_value(63) is False
    assert LIVE_PARAMETERS["minor"].controller_value(64) is True


@pytest.mark.parametrize(("values", "message"), [
    ({"temperature": 2.5}, "temperature takes a number from 0 to 2"),
    ({"temperature": "hot"}, "temperature takes a number"),
    ({"lookahead": 1.5}, "lookahead takes a whole number"),
    ({"speculation": -1}, "speculation takes a whole number from 0 to 256"),
    ({"thru": 3}, "thru is on/off"),
    ({"channels": (0, 1, 2)}, "four MIDI channels"),
    ({"melody_channel": 16}, "MIDI channel 1-16"),
    ({"fermata_cc": 200}, "fermata_cc takes a whole number from 0 to 127"),
    ({"volume": 1}, "unknown live setting 'volume'"),
])
def test_checked_settings_name_what_is_wrong(values, message):
    with pytest.raises(ValueError, match=message):
        LiveSettings.checked(**values)


def test_checked_settings_keep_defaults_for_none_and_convert_kinds():
    settings = LiveSettings.checked(temperature=None, lookahead=2.0, thru="off",
                                    channels=[3, 2, 1, 0])
    assert settings.temperature == LIVE_PARAMETERS["temperature"].default
    assert settings.lookahead == 2 and isinstance(settings.lookahead, int)
    assert settings.thru is False and settings.channels == (3, 2, 1, 0)
    assert dataclasses.replace(settings) == settings


def test_the_toml_file_is_checked_by_the_same_contract(tmp_path):
    path = tmp_path / "kantor.toml"
    path.write_text("[live]\ntemperature = 3.0\n")
    with pytest.raises(ConfigError, match="temperature takes a number from 0 to 2"):
        load_config(path, {}).check()
    path.write_text("[live]\nkey = 9\n")
    with pytest.raises(ConfigError, match="key takes a whole number from -7 to 7"):
        load_config(path, {}).check()
    path.write_text("[live]\nspeculation = 12\nrule_weight = 2\n")
    config = load_config(path, {"temperature": 0.7})
    config.check()
    settings = LiveSettings.checked(**config.live_settings())
    assert (settings.speculation, settings.rule_weight, settings.temperature) == (12, 2.0, 0.7)


@pytest.mark.parametrize(("flags", "message"), [
    (["live", "--temperature", "5"], "temperature takes a number from 0 to 2, not 5.0"),
    (["serve", "--speculation", "999"], "speculation takes a whole number from 0 to 256"),
])
def test_flags_are_checked_before_anything_opens(flags, message):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "kantor.bridges.cli", *flags],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_moving_under_held_notes_is_switched_by_flag_and_file(tmp_path):
    from kantor.bridges.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["live"]).move_under is None  # the default: on
    assert parser.parse_args(["live", "--no-move-under"]).move_under is False
    assert parser.parse_args(["serve", "--move-under"]).move_under is True
    path = tmp_path / "kantor.toml"
    path.write_text("[live]\nmove_under = false\n")
    settings = LiveSettings.checked(**load_config(path, {}).live_settings())
    assert settings.move_under is False and LiveSettings().move_under is True


def test_the_metre_and_pickup_come_by_flag_and_file(tmp_path):
    from kantor.bridges.cli import build_parser

    args = build_parser().parse_args(["live", "--beats-per-bar", "3", "--pickup", "1"])
    assert (args.beats_per_bar, args.pickup) == (3, 1.0)
    path = tmp_path / "kantor.toml"
    path.write_text("[live]\nbeats_per_bar = 3\npickup = 0.5\n")
    settings = LiveSettings.checked(**load_config(path, {}).live_settings())
    assert (settings.steps_per_bar, settings.pickup_steps) == (12, 2)
    with pytest.raises(ValueError, match="beats_per_bar takes a whole number from 1 to 8"):
        LiveSettings.checked(beats_per_bar=9)


def test_the_offline_settle_temperature_keeps_its_old_flag():
    from kantor.bridges.cli import _options_from, build_parser

    for flag in ("--settle-temperature", "--temperature"):
        args = build_parser().parse_args(["harmonize", "melody.mid", flag, "0.7"])
        assert _options_from(args).settle_temperature == 0.7


def test_cc_27_switches_between_the_shipped_prior_and_tuned_networks():
    from kantor.engine.chorale.live import LiveHarmonizer

    h = LiveHarmonizer.load()
    h.prepare()
    assert h.has_tuned and h.playing == "tuned"  # the default, where installed
    h.process([0xB0, 27, 0], 0.0)
    assert h.playing == "prior" and h.parameters()["tuned"] is False
    answer = h.process([0x90, 67, 90], 0.1)
    assert sum(m[0] & 0xF0 == 0x90 for m in answer) == 4  # the melody and three voices
    h.process([0xB0, 27, 127], 0.2)
    assert h.playing == "tuned"
