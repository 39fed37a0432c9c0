"""What the tests and the benchmarks share, so that neither imports the other: a `kantor
serve` child process (serve_process), DAW-like JACK MIDI clients (jack_client), hostile
melody files (hostile), and the TTS benchmark's engines and metrics (tts_systems,
tts_metrics). Not part of the installed package: run from the repository root."""
