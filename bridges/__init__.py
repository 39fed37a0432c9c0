"""The outside world: score files, MIDI ports, audio devices, the CLI."""
