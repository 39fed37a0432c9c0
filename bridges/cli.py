"""The ``kantor`` command.

    kantor harmonize [MELODY] [-o OUT ...]   melody (MIDI/MusicXML) -> 4-voice MIDI/MusicXML
    kantor live [--api jack|alsa|coremidi]   harmonise a melody played into virtual MIDI ports
    kantor phonemize "TEXT" [--json]         normalised words, their phones and sources
    kantor say "TEXT" [-o out.wav | --raw]   speak text (or - for stdin, --file F) aloud
    kantor serve [--config kantor.toml]      live harmoniser + speech, OSC and HTTP control
    kantor eval harmonizer [-o results.json] score the shipped model on held-out chorales
    kantor train harmonizer [--preset tiny]  train, export to ONNX, write model cards

Training imports torch lazily (``pip install kantor[train]``); everything else runs on the
runtime alone.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import os
import sys
import time
from pathlib import Path

from kantor.engine.chorale.encoding import VOICES
from kantor.engine.chorale.live_settings import LIVE_PARAMETERS, LiveSettings
from kantor.engine.models import ASSETS, BUNDLED_MELODY, ModelError

log = logging.getLogger("kantor")


class CliError(Exception):
    """A problem to report in one line with a non-zero exit status."""


def _options_from(args: argparse.Namespace):
    from kantor.bridges.harmonizing import HarmonizeOptions

    return HarmonizeOptions(
        iterations=args.iterations, settle_temperature=args.settle_temperature,
        chains=args.chains, rule_weight=args.rule_weight, seed=args.seed,
        key=getattr(args, "key", None), no_fermatas=getattr(args, "no_fermatas", False),
        fermatas=getattr(args, "fermata", []), fix=getattr(args, "fix", []))


def _settings_from(args: argparse.Namespace):
    from kantor.engine.chorale.melody import MelodyError

    try:
        return _options_from(args).gibbs_settings()
    except MelodyError as error:
        raise CliError(str(error)) from None


def cmd_harmonize(args: argparse.Namespace) -> int:
    from kantor.bridges.harmonizing import harmonize
    from kantor.bridges.outputs import OutputError, check_output
    from kantor.bridges.scorefiles import ScoreFileError, read_melody, write_harmonisation
    from kantor.engine.chorale.gibbs import ChoraleSampler
    from kantor.engine.chorale.melody import MelodyError

    melody_path = Path(args.melody) if args.melody else BUNDLED_MELODY
    if not args.melody:
        print(f"no melody given: harmonising the bundled one ({melody_path.name})")
    outputs = [Path(o) for o in args.output] or [
        Path(f"{melody_path.stem}-harmonized.mid"), Path(f"{melody_path.stem}-harmonized.musicxml")]
    for out in outputs:
        if out.suffix.lower() not in (".mid", ".midi", ".musicxml", ".xml"):
            raise CliError(f"{out}: the output must end in .mid or .musicxml")
    options = _options_from(args)
    try:
        # before any work: a directory, the input itself or an unmakeable folder
        outputs = [check_output(out, inputs=[melody_path]) for out in outputs]
        melody = read_melody(melody_path)  # a bad file fails before the models load
        sampler = ChoraleSampler.load(Path(args.assets) if args.assets else ASSETS)
        result, melody = harmonize(sampler, melody, options)
        for warning in melody.warnings:
            log.warning("%s", warning)
        for out in outputs:
            write_harmonisation(result.raw, melody, out)  # whole or not at all
    except (ScoreFileError, MelodyError, ModelError, OutputError) as error:
        raise CliError(str(error)) from None
    settings = options.gibbs_settings()
    bars = melody.n_steps / melody.steps_per_bar
    print(f"harmonised {bars:.1f} bars in {result.seconds:.2f} s "
          f"({settings.iterations} iterations, {settings.chains} chains, seed {settings.seed}); "
          f"rule breaks: {result.violations}")
    key = melody.resolved_key()
    print(f"key: {key} ({'as given' if melody.key else 'read from the melody'}, "
          f"{melody.key_sharps:+d} sharps)")
    for out in outputs:
        print(f"wrote {out}")
    return 0


def cmd_eval_harmonizer(args: argparse.Namespace) -> int:
    """`kantor eval harmonizer [--style]`: the offline evaluations (export/__main__.py)."""
    settings = _settings_from(args)
    try:
        from kantor.export.__main__ import evaluate_harmonizer
    except ImportError as error:
        raise CliError(f"evaluation needs the train extra (pip install 'kantor[train]'): "
                       f"{error}") from None
    for line in evaluate_harmonizer(settings, split=args.split, limit=args.limit,
                                    style=args.style, seeds=args.seeds, assets=args.assets,
                                    output=args.output):
        print(line)
    return 0


def cmd_phonemize(args: argparse.Namespace) -> int:
    from kantor.engine.speech.frontend import FrontEnd
    from kantor.engine.speech.text import TextError

    text = sys.stdin.read() if args.text in ([], ["-"]) else " ".join(args.text)
    try:
        phrases = FrontEnd.load(user_lexicon=args.lexicon).phrases(text)
    except (TextError, ModelError) as error:
        raise CliError(str(error)) from None
    if args.json:
        print(json.dumps({"phrases": [
            {"words": [{"text": w.text, "phones": list(w.phones), "source": w.source}
                       for w in phrase.words],
             "break_after": phrase.break_after, "mark": phrase.mark,
             "question": phrase.question} for phrase in phrases]}, indent=2))
        return 0
    if not phrases:
        print("kantor phonemize: no words in the text", file=sys.stderr)
        return 0
    words = [w for phrase in phrases for w in phrase.words]
    text_width = max(len(w.text) for w in words)
    phones_width = max(len(" ".join(w.phones)) for w in words)
    for phrase in phrases:
        for w in phrase.words:
            print(f"{w.text:<{text_width}}  {' '.join(w.phones):<{phones_width}}  {w.source}")
        question = ", question" if phrase.question else ""
        print(f"  -- {phrase.break_after} break{question} --")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`kantor train WHAT`: export/__main__.py's table does the work; with --nproc N,
    torchrun starts N processes that share it (gloo on CPUs, nccl on GPUs)."""
    argv = ["train", args.what, "--preset", args.preset]
    for flag, value in (("--run-dir", args.run_dir), ("--out", args.out),
                        ("--eval-limit", args.eval_limit), ("--threads", args.threads)):
        if value is not None:
            argv += [flag, str(value)]
    if args.nproc > 1:
        import subprocess

        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node", str(args.nproc), "-m", "kantor.export", *argv]
        return subprocess.run(command).returncode
    try:
        from kantor.export.__main__ import TrainingError, train
    except ImportError as error:
        raise CliError(f"training needs the train extra (pip install 'kantor[train]'): "
                       f"{error}") from None
    try:
        for line in train(args.what, args.preset, args.run_dir, args.out, args.eval_limit,
                          args.threads):
            print(line)
    except TrainingError as error:
        raise CliError(str(error)) from None
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    import signal
    import threading

    from kantor.bridges.midi import (
        LiveMidiService,
        MidiPortError,
        MidiPorts,
        list_ports,
        pick_api,
        ports_abandoned,
        start_private_jack,
    )
    from kantor.bridges.scheduling import apply_core_choice, raise_priority, real_time
    from kantor.engine.chorale.keys import KeyParseError, parse_key_or_sharps
    from kantor.engine.chorale.live import LiveHarmonizer

    # settings first: a mistake in them is reported before any port or server opens
    try:
        key_sharps, key = parse_key_or_sharps(args.key)
    except KeyParseError as error:
        raise CliError(str(error)) from None
    try:
        settings = LiveSettings.checked(
            **{name: getattr(args, name) for name in LIVE_FLAGS},
            channels=_channels(args.channels), thru=not args.no_thru,
            tuned=None if args.model is None else args.model == "tuned",
            move_under=args.move_under, fermata_cc=args.fermata_cc, key_sharps=key_sharps,
            minor=bool(key and key.minor),
            tonic_degree=key.degree_of(key_sharps) if key else None,
            melody_channel=None if args.melody_channel is None
            else args.melody_channel - 1, seed=args.seed)
    except ValueError as error:
        raise CliError(str(error)) from None
    jack = None
    try:
        try:
            api = pick_api(args.api)
        except MidiPortError:
            if not args.start_jack:
                raise
            jack = start_private_jack()
            api = "jack"
            print(f"no MIDI system was running: started a JACK server '{jack.name}' (dummy "
                  f"driver); other JACK clients reach it with JACK_DEFAULT_SERVER={jack.name}",
                  flush=True)
        if args.list_ports:
            sources, destinations = list_ports(api)
            print(f"{api} MIDI sources (use with --in-port):")
            for name in sources:
                print(f"  {name}")
            print(f"{api} MIDI destinations (use with --out-port):")
            for name in destinations:
                print(f"  {name}")
            return 0
        harmonizer = LiveHarmonizer.load(Path(args.assets) if args.assets else ASSETS, settings)
        ports = MidiPorts(api, args.name, in_port=args.in_port, out_port=args.out_port)
    except (MidiPortError, ModelError) as error:
        if jack is not None:
            jack.stop()
        raise CliError(str(error)) from None
    service = LiveMidiService(harmonizer, ports)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    scheduling = raise_priority()  # the worker thread starting now inherits it
    service.start()
    scheduling = real_time(service.worker_id) or scheduling
    core = apply_core_choice(args.cpu)  # every thread, the MIDI ones included
    scheduling += f", {core}" if core else ""
    print(f"kantor live ({api}): ready. Send the melody to '{ports.names.input}'; "
          f"the voices come out of '{ports.names.output}' on channels "
          f"{', '.join(str(c + 1) for c in settings.channels)} (S, A, T, B); the worker "
          f"runs at {scheduling} scheduling; the {harmonizer.playing} networks play"
          f"{'' if harmonizer.has_tuned else ' (no tuned ones here)'}. Ctrl-C stops.",
          flush=True)
    started = time.monotonic()
    try:
        while not stop.wait(args.status_interval):
            status = service.status()
            print(_status_line(status), file=sys.stderr, flush=True)
            if status["lost"] and service.watch is None:  # no JACK watch to bring it back
                log.error("MIDI port lost (%s): stopping", status["lost"])
                break
            if args.duration and time.monotonic() - started >= args.duration:
                break
    finally:
        service.stop()
        final = service.status()
        print(f"kantor live: stopped; {final['sounding']} notes left sounding. "
              + _status_line(final), flush=True)
        if jack is not None:
            jack.stop()
    if ports_abandoned():
        # clients of a JACK server that died: closing them (their destructors, at the
        # interpreter's exit) can block for ever inside libjack
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """`kantor explain MELODY --voice bass --beat 5`: harmonise the melody as `harmonize`
    does, then attribute the voice's note at that beat to the notes its network read."""
    from kantor.bridges.explain_view import heat_map, table
    from kantor.bridges.harmonizing import harmonize
    from kantor.bridges.outputs import OutputError, check_output
    from kantor.bridges.scorefiles import ScoreFileError, read_melody
    from kantor.engine.chorale.encoding import STEPS_PER_QUARTER, raw_to_tokens
    from kantor.engine.chorale.explain import VoiceWeights, explain_offline
    from kantor.engine.chorale.gibbs import ChoraleSampler
    from kantor.engine.chorale.melody import MelodyError, sampler_inputs

    melody_path = Path(args.melody) if args.melody else BUNDLED_MELODY
    voice = VOICES.index(args.voice)
    try:
        png, json_path = (check_output(Path(p), inputs=[melody_path]) if p else None
                          for p in (args.png, args.json))
        melody = read_melody(melody_path)
        sampler = ChoraleSampler.load(Path(args.assets) if args.assets else ASSETS)
        result, melody = harmonize(sampler, melody, _options_from(args))
        step = round((args.beat - 1) * STEPS_PER_QUARTER)
        if not 0 <= step < melody.n_steps:
            raise MelodyError(f"beat {args.beat:g} is outside the melody (beats 1 to "
                              f"{melody.n_steps / STEPS_PER_QUARTER:g})")
        tokens = raw_to_tokens(result.raw, sampler.vocabularies)
        meta = sampler_inputs(melody)[2][:, sampler.meta_columns]
        weights = VoiceWeights.from_onnx(sampler.models[voice])
        explanation = explain_offline(weights, sampler.vocabularies, tokens, meta, voice,
                                      step, sampler.context)
    except (ScoreFileError, MelodyError, ModelError, OutputError) as error:
        raise CliError(str(error)) from None
    print(table(explanation))
    if png is not None:
        try:
            heat_map(explanation, png)
        except RuntimeError as error:
            raise CliError(str(error)) from None
        print(f"wrote {png}")
    if json_path is not None:
        json_path.write_text(json.dumps(explanation.to_json(), indent=1) + "\n")
        print(f"wrote {json_path}")
    return 0


def _say_text(args: argparse.Namespace) -> str:
    if (args.text is None) == (args.file is None):
        raise CliError('give the text ("TEXT", or - for stdin) or --file PATH, not both')
    if args.file is not None:
        try:
            return Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CliError(f"cannot read {args.file}: {error}") from None
    return sys.stdin.read() if args.text == "-" else args.text


def cmd_say(args: argparse.Namespace) -> int:
    import threading

    from kantor.bridges import audio
    from kantor.engine.speech.stream import SpeechStream, SpeechStreamError

    if args.output and args.raw:
        raise CliError("-o and --raw both choose the output: give one")
    if not (args.rate > 0 and args.pitch > 0):
        raise CliError("--rate and --pitch are multipliers above 0 (1 = the voice's own)")
    report = sys.stderr if args.raw else sys.stdout  # stdout carries the PCM with --raw
    jack = None
    stream = None
    try:
        if args.start_jack and not (args.output or args.raw):
            from kantor.bridges.jack import jack_running
            from kantor.bridges.midi import MidiPortError, start_private_jack

            if not jack_running():
                try:
                    jack = start_private_jack()
                except MidiPortError as error:
                    raise CliError(str(error)) from None
                print(f"started a JACK server '{jack.name}' (dummy driver)", file=report)
            audio.rescan(args.name)
            args.hostapi = args.hostapi or "jack"
        elif args.name != "kantor":
            audio.rescan(args.name)
        if args.list_devices:
            if not audio.list_devices():
                print(f"no audio output devices; {audio.FILE_HINT}")
            for device in audio.list_devices():
                mark = "*" if device.default else " "
                print(f"{mark}{device.index:3d}  {device.name} ({device.hostapi}, "
                      f"{device.channels} ch, {device.rate} Hz)")
            return 0
        text = _say_text(args)
        from kantor.engine.speech.voice import Voice

        voice = Voice.load(vocoder=args.vocoder)
        rate = args.sample_rate or voice.sample_rate
        if args.output:
            sink = audio.WavSink(args.output, rate,
                                 inputs=(args.file,) if args.file else ())
        elif args.raw:
            sink = audio.RawSink(sys.stdout.buffer, rate)
        else:
            sink = audio.DeviceSink(args.device, hostapi=args.hostapi, blocksize=args.blocksize,
                                    samplerate=args.sample_rate)
        sentences = [s for s in voice.split(text) if s.strip()] if not args.phonemes \
            else [text]
        if not sentences:
            raise CliError("nothing to say: the text is empty")
        if not isinstance(sink, audio.DeviceSink):  # a file or a pipe: straight from the voice
            return _say_to_file(voice, sentences, sink, args, report)
        stream = SpeechStream(voice, sink.samplerate)
        stream.say(sentences[0], rate=args.rate, pitch=args.pitch, phonemes=args.phonemes,
                   block=True)
        said = threading.Event()

        def feed() -> None:  # the rest waits in the bounded queue while the first plays
            try:
                for sentence in sentences[1:]:
                    if not stream.say(sentence, rate=args.rate, pitch=args.pitch,
                                      phonemes=args.phonemes, block=True, timeout=600):
                        break
            except SpeechStreamError:
                pass
            finally:
                said.set()

        threading.Thread(target=feed, daemon=True).start()
        try:
            sink.play(stream, said=said)
        finally:
            sink.stop()
        stats = stream.stats()
        first = stats.first_audio_out_s[0] if stats.first_audio_out_s else float("nan")
        print(f"kantor say: {len(sentences)} sentence(s), "
              f"{stats.samples_out / sink.samplerate:.2f} s of audio to {sink.device.name}; "
              f"first audio after {first * 1000:.0f} ms; underflows: {stats.underflows}",
              file=report)
        return 0
    except (audio.AudioOutputError, SpeechStreamError, ModelError, ValueError) as error:
        raise CliError(str(error)) from None  # ValueError: the voice's VoiceError
    finally:
        if stream is not None:
            stream.close()
        if jack is not None:
            audio.shutdown()
            jack.stop()


def _say_to_file(voice, sentences: list[str], sink, args: argparse.Namespace, report) -> int:
    """`kantor say -o FILE` and `--raw`: each sentence's chunks, resampled to the sink's
    rate, written as the voice makes them; a failure leaves no partial file."""
    from kantor.bridges import audio
    from kantor.engine.speech.features import resample_chunks

    started = time.perf_counter()
    first, samples = None, 0
    try:
        for sentence in sentences:
            began = time.perf_counter()
            written, latency = sink.write_speech(resample_chunks(
                voice.stream(sentence, rate=args.rate, pitch=args.pitch,
                             phonemes=args.phonemes), voice.sample_rate, sink.samplerate))
            if first is None and latency is not None:
                first = began - started + latency
            samples += written
    except BaseException:
        if isinstance(sink, audio.WavSink):
            sink.abort()  # no partial file
        raise
    sink.close()
    where = args.output or "stdout"
    shown = "-" if first is None else f"{first * 1000:.0f}"
    print(f"kantor say: {len(sentences)} sentence(s), {samples / sink.samplerate:.2f} s of "
          f"audio to {where}; first audio after {shown} ms", file=report)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from kantor.bridges.serve_config import ConfigError, load_config
    from kantor.bridges.service import KantorService, ServiceError

    overrides = {
        "host": args.host, "http_port": args.port, "osc_host": args.osc_host,
        "osc_port": args.osc_port, "allow_remote": args.allow_remote or None,
        "token": args.token, "api": args.api, "midi_name": args.name,
        "in_port": args.in_port, "out_port": args.out_port,
        "start_jack": args.start_jack or None, "live_cpu": args.live_cpu,
        **{name: getattr(args, name) for name in LIVE_FLAGS},
        "channels": list(c + 1 for c in _channels(args.channels)) if args.channels else None,
        "melody_channel": args.melody_channel,
        "thru": False if args.no_thru else None, "key": args.key, "seed": args.seed,
        "tuned": None if args.model is None else args.model == "tuned",
        "move_under": args.move_under, "assets": args.assets,
        "speech": False if args.no_audio else None,
        "device": args.device, "hostapi": args.hostapi, "blocksize": args.blocksize,
        "sample_rate": args.sample_rate, "speech_clients": args.speech_clients,
        "max_chars": args.max_chars, "drain_seconds": args.drain_seconds,
        "vocoder": args.vocoder, "max_body_bytes": args.max_body_bytes,
        "verbose": (args.verbose or args.serve_verbose or None)}
    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        raise CliError(str(error)) from None
    if config.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    stop = threading.Event()

    def stop_soon(*_) -> None:
        # Stopping must end within STOP_DEADLINE_S (plus any --drain-seconds) whatever
        # hangs (PortAudio on a JACK server that died never returns): a watchdog exits
        # the process past it.
        if not stop.is_set():
            stop.set()
            threading.Thread(target=_exit_after,
                             args=(STOP_DEADLINE_S + config.drain_seconds,), daemon=True,
                             name="kantor-stop-watchdog").start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop_soon)
    service = KantorService(config)
    surfaces = []
    try:
        from kantor.bridges.http import HttpServer
        from kantor.bridges.osc import OscServer

        # Sockets first: a port in use fails in a second, not after the models load.
        surfaces.append(HttpServer(service))
        if config.osc_port:
            surfaces.append(OscServer(service))
        service.start()
        for surface in surfaces:
            surface.start()
    except (ServiceError, OSError) as error:
        for surface in surfaces:
            surface.stop()  # not started: closes its socket
        service.stop()
        raise CliError(str(error)) from None
    live = service.live.info
    speech = service.speech.sink
    osc = f"; OSC on udp {config.osc_host}:{surfaces[1].port}" if config.osc_port else ""
    print(f"kantor serve: ready. Melody into '{live['input']}', voices out of "
          f"'{live['output']}' ({live['api']}); speech to "
          f"{speech.device.name if speech else 'clients only (--no-audio)'}; "
          f"http://{config.host}:{config.http_port}/ (status page, API under /v1, "
          f"schema /docs){osc}. Ctrl-C stops.", flush=True)
    started = time.monotonic()
    try:
        while not stop.wait(1.0):
            if service.live is not None and not service.live.alive:
                log.error("the live harmoniser process ended unexpectedly; MIDI is off")
                service.live = None
            if args.duration and time.monotonic() - started >= args.duration:
                break
    finally:
        stop_soon()  # from here on the watchdog runs, however the loop ended
        for surface in reversed(surfaces):
            surface.stop()
        final = service.stop()
        print(f"kantor serve: stopped; {final.get('sounding', 0)} notes left sounding, "
              f"{final.get('notes_in', 0)} melody notes harmonised.", flush=True)
    if service.jack_lost_once:
        # PortAudio's exit handler would wait for ever on the dead server's client
        sys.stderr.flush()
        os._exit(0)
    return 0


# Live parameters with a flag of their own in `kantor live` and `kantor serve` (the key,
# the mode and thru have --key and --no-thru); ranges, defaults and help from the table.
LIVE_FLAGS = ("temperature", "lookahead", "rule_weight", "velocity_scale", "tempo",
              "beats_per_bar", "pickup", "speculation")
STOP_DEADLINE_S = 8.0  # SIGTERM to exit, at most (plus the interpreter's own exit)


def _exit_after(seconds: float) -> None:
    """Exit the process ``seconds`` from now if it is still running (something hangs).
    The kernel ends it a second later if even this thread cannot run (a C call that
    holds the interpreter): SIGALRM's default action needs no Python."""
    import signal

    signal.alarm(int(seconds) + 1)  # SIGALRM keeps its default action (terminate)
    time.sleep(seconds)
    try:  # straight to the descriptor: a logging lock or a full pipe must not block exit
        os.write(2, f"kantor: error: stopping took over {seconds:.0f} s (an audio or MIDI "
                    "system that does not answer): exiting now\n".encode())
    finally:
        os._exit(1)


def _core(value: str) -> str | int:
    """argparse type of ``--cpu``: 'last', 'any' or a core number."""
    from kantor.bridges.scheduling import core_choice

    try:
        return core_choice(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_live_flags(group) -> None:
    """--temperature, --lookahead, ... as LIVE_PARAMETERS describes them (None = default)."""
    for name in LIVE_FLAGS:
        parameter = LIVE_PARAMETERS[name]
        group.add_argument(f"--{name.replace('_', '-')}", type=parameter.kind,
                           help=parameter.describe())
    group.add_argument("--move-under", action=argparse.BooleanOptionalAction, default=None,
                       help=LIVE_PARAMETERS["move_under"].describe())
    tuned = LIVE_PARAMETERS["tuned"]
    group.add_argument("--model", choices=("prior", "tuned"),
                       help=f"which live networks play: the prior, trained on Bach, or the "
                            f"tuned ones (default {'tuned' if tuned.default else 'prior'}; "
                            f"CC {tuned.cc} switches while playing)")


def _channels(text: str) -> tuple[int, int, int, int]:
    try:
        channels = tuple(int(c) - 1 for c in text.split(","))
    except ValueError:
        channels = ()
    if len(channels) != 4 or not all(0 <= c < 16 for c in channels):
        raise CliError("--channels takes four MIDI channels 1-16 for S,A,T,B, e.g. 1,2,3,4")
    return channels  # type: ignore[return-value]


def _status_line(status: dict) -> str:
    latency = status["latency_ms"]
    timing = (f"latency p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms, "
              f"max {latency['max']:.2f} ms" if latency else "latency -")
    dropped = ", ".join(f"{k}: {v}" for k, v in status["dropped"].items()) or "none"
    lost = f"; {status['lost']}: waiting for it to return" if status.get("lost") else ""
    ahead = ""
    for mode, counts in (status.get("speculation") or {}).items():
        if isinstance(counts, dict) and counts["hits"] + counts["misses"]:
            ahead += (f"; answered ahead ({mode} mode) {counts['hits']} of "
                      f"{counts['hits'] + counts['misses']}")
    return (f"notes in {status['notes_in']}, out {status['notes_out']}; {timing}{ahead}; "
            f"dropped: {dropped}{lost}")


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--iterations", type=int, help="Gibbs sweeps (default 40)")
    group.add_argument("--settle-temperature", "--temperature", type=float,
                       dest="settle_temperature",
                       help="where the sampler's annealing ends: the temperature the chords "
                            "settle at on the beat; lower is safer, higher more adventurous "
                            "(default 0.5; off the beat the inner voices keep the networks' "
                            "own, 1.0; --temperature is its old name)")
    group.add_argument("--chains", type=int, help="chains sampled side by side; the most "
                                                  "likely wins (default 4)")
    group.add_argument("--rule-weight", type=float,
                       help="nats charged per rule broken at the start of the run, growing "
                            "4-fold by its end (default 4; 0 = off)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--assets", help="folder with chorale-*.onnx models and their cards")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kantor", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)

    harmonize = commands.add_parser("harmonize", help="harmonise a melody in four voices")
    harmonize.add_argument("melody", nargs="?",
                           help="melody file (.mid or .musicxml); default: a bundled hymn tune")
    harmonize.add_argument("-o", "--output", action="append", default=[],
                           help="output file, .mid or .musicxml (repeatable)")
    harmonize.add_argument("--fix", action="append", default=[], metavar="VOICE@BEAT=PITCH",
                           help="pin a note, e.g. bass@1=G2 or alto@3.5=D4:2 (beats from 1, "
                                "optional length in beats); repeatable")
    harmonize.add_argument("--key", help="the key: a name such as 'b minor', 'Eb major' or "
                           "'d dorian', or a signature in sharps (negative for flats) with "
                           "the tonic and mode read from the melody (default: the file's "
                           "signature, tonic and mode read from the melody)")
    harmonize.add_argument("--no-fermatas", action="store_true",
                           help="ignore fermatas (from the file or guessed at long notes)")
    harmonize.add_argument("--fermata", action="append", type=float, default=[],
                           metavar="BEAT", help="put a fermata on the melody note sounding at "
                           "BEAT (from 1 at the first note), replacing the file's; repeatable")
    _add_sampling_options(harmonize)
    harmonize.set_defaults(handler=cmd_harmonize)

    explain = commands.add_parser(
        "explain", help="why a harmonised note: which notes of which voices drove it")
    explain.add_argument("melody", nargs="?",
                         help="melody file (.mid or .musicxml); default: a bundled hymn tune")
    explain.add_argument("--voice", default="bass", choices=VOICES,
                         help="the voice whose note is explained (default bass)")
    explain.add_argument("--beat", type=float, default=1.0,
                         help="where: quarter-note beat from 1 at the first note (default 1)")
    explain.add_argument("--png", help="also draw a heat map here")
    explain.add_argument("--json", help="also write every cell's attribution here")
    explain.add_argument("--key", help="the key, as for harmonize")
    _add_sampling_options(explain)
    explain.set_defaults(handler=cmd_explain)

    evaluate = commands.add_parser("eval", help="evaluate a model on held-out data")
    evaluate.add_argument("what", choices=["harmonizer"])
    evaluate.add_argument("-o", "--output", help="write the JSON report here")
    evaluate.add_argument("--split", default="test", choices=["test", "valid"])
    evaluate.add_argument("--limit", type=int, help="only the first N chorales")
    evaluate.add_argument("--style", action="store_true",
                          help="compare Kantor's settings with Bach's feature by feature and "
                               "by a discriminator (writes benchmarks/results/"
                               "harmonizer_style_SPLIT.json + .png unless -o)")
    evaluate.add_argument("--seeds", type=int, default=3,
                          help="settings per melody for --style (default 3)")
    _add_sampling_options(evaluate)
    evaluate.set_defaults(handler=cmd_eval_harmonizer)

    live = commands.add_parser("live", help="harmonise live on virtual MIDI ports")
    live.add_argument("--api", choices=["alsa", "jack", "coremidi", "windows"],
                      help="MIDI system (default: JACK if running, else ALSA; CoreMIDI on "
                           "macOS)")
    live.add_argument("--name", default="kantor", help="client name of Kantor's ports")
    live.add_argument("--in-port", help="read the melody from this existing port instead of "
                                        "a virtual one (name or part of it)")
    live.add_argument("--out-port", help="send the voices to this existing port")
    live.add_argument("--list-ports", action="store_true", help="list MIDI ports and exit")
    _add_live_flags(live)
    live.add_argument("--channels", default="1,2,3,4",
                      help="output channels for S,A,T,B (default 1,2,3,4)")
    live.add_argument("--melody-channel", type=int, help="only this input channel is melody")
    live.add_argument("--no-thru", action="store_true", help="do not echo the melody")
    live.add_argument("--fermata-cc", type=int, default=64,
                      help="controller that marks a fermata while held (default 64, sustain)")
    live.add_argument("--key", default="0",
                      help="the key: a name such as 'b minor' or 'd dorian', or a signature "
                           "in sharps (- = flats) for its major key (CC 25 and 26 change it "
                           "while playing)")
    live.add_argument("--seed", type=int, default=0)
    live.add_argument("--assets", help="folder with chorale-live-*.onnx and their cards")
    live.add_argument("--start-jack", action="store_true",
                      help="if no MIDI system runs (a headless machine), start a private JACK "
                           "server with the dummy driver for the session")
    live.add_argument("--cpu", type=_core, default="last",
                      help="the core the live process keeps to: 'last' (default: the last "
                           "one it may use), 'any' (the system chooses) or a number")
    live.add_argument("--status-interval", type=float, default=1.0, help="seconds")
    live.add_argument("--duration", type=float, help="stop after this many seconds")
    live.set_defaults(handler=cmd_live)

    say = commands.add_parser("say", help="speak text aloud, or into a WAV file")
    say.add_argument("text", nargs="?", help='what to say; - reads stdin')
    say.add_argument("--file", help="read the text from this file (long texts start playing "
                                    "after the first sentence)")
    say.add_argument("-o", "--output", help="write a sound file (e.g. out.wav) instead of "
                                            "playing")
    say.add_argument("--raw", action="store_true",
                     help="write 16-bit little-endian mono PCM to stdout instead of playing")
    say.add_argument("--rate", type=float, default=1.0, help="speaking rate multiplier")
    say.add_argument("--pitch", type=float, default=1.0, help="pitch multiplier")
    say.add_argument("--vocoder", default="auto", choices=["auto", "neural", "world"],
                     help="neural (the default when its model loads) or the WORLD-style one")
    say.add_argument("--phonemes", action="store_true",
                     help="the text is ARPAbet phonemes (e.g. 'HH AH0 L OW1'), said exactly")
    say.add_argument("--device", help="output device, by index or part of its name")
    say.add_argument("--hostapi", help="host API of the device (jack, alsa, pulse, ...)")
    say.add_argument("--list-devices", action="store_true", help="list output devices and exit")
    say.add_argument("--blocksize", type=int, default=1024, help="frames per audio callback")
    say.add_argument("--sample-rate", type=int,
                     help="output rate in Hz (default: the device's; 24000 for files)")
    say.add_argument("--name", default="kantor", help="JACK client name")
    say.add_argument("--start-jack", action="store_true",
                     help="if no JACK server runs (a headless machine), start a private one "
                          "with the dummy driver and play into it")
    say.set_defaults(handler=cmd_say)

    serve = commands.add_parser(
        "serve", help="run the live harmoniser and speech as one service with OSC and "
                      "HTTP/WebSocket control")
    serve.add_argument("--config", help="TOML settings file (flags override it)")
    serve.add_argument("--verbose", dest="serve_verbose", action="store_true",
                       help="log per-event timings")
    net = serve.add_argument_group("control surfaces")
    net.add_argument("--host", help="HTTP address (default 127.0.0.1)")
    net.add_argument("--port", type=int, help="HTTP port (default 8765)")
    net.add_argument("--osc-host", help="OSC address (default 127.0.0.1)")
    net.add_argument("--osc-port", type=int, help="OSC UDP port (default 9000; 0 = no OSC)")
    net.add_argument("--allow-remote", action="store_true",
                     help="allow a non-loopback address (needs --token)")
    net.add_argument("--token", help="required of every client (or $KANTOR_TOKEN)")
    midi = serve.add_argument_group("live MIDI")
    midi.add_argument("--api", choices=["alsa", "jack", "coremidi", "windows"])
    midi.add_argument("--name", help="client name of Kantor's ports (default kantor)")
    midi.add_argument("--in-port", help="read the melody from this existing port")
    midi.add_argument("--out-port", help="send the voices to this existing port")
    midi.add_argument("--start-jack", action="store_true",
                      help="start a private JACK server (dummy driver) if none runs")
    midi.add_argument("--live-cpu", type=_core,
                      help="the core the live process keeps to: 'last' (default), 'any' or "
                           "a number")
    _add_live_flags(midi)
    midi.add_argument("--channels", help="output channels for S,A,T,B (default 1,2,3,4)")
    midi.add_argument("--melody-channel", type=int,
                      help="only this input channel is melody")
    midi.add_argument("--no-thru", action="store_true", help="do not echo the melody")
    midi.add_argument("--key", type=int, help="key signature in sharps (- = flats)")
    midi.add_argument("--seed", type=int, help="random seed of the live sampler")
    midi.add_argument("--assets", help="folder with the models and their cards")
    speech = serve.add_argument_group("speech")
    speech.add_argument("--no-audio", action="store_true",
                        help="no audio output: speech only streams to clients")
    speech.add_argument("--device", help="output device, by index or part of its name")
    speech.add_argument("--hostapi", help="host API of the device (jack, alsa, ...)")
    speech.add_argument("--blocksize", type=int, help="frames per audio callback (1024)")
    speech.add_argument("--sample-rate", type=int, help="output rate (the device's)")
    speech.add_argument("--speech-clients", type=int,
                        help="clients streaming speech at once (default 4)")
    speech.add_argument("--max-chars", type=int, help="longest text accepted (5000)")
    speech.add_argument("--drain-seconds", type=float,
                        help="on stop, let queued speech play this long (default 0: cancel)")
    speech.add_argument("--vocoder", choices=["auto", "neural", "world"],
                        help="neural (the default when its model loads) or WORLD-style")
    serve.add_argument("--max-body-bytes", type=int, help="largest upload (1000000)")
    serve.add_argument("--duration", type=float, help="stop after this many seconds")
    serve.set_defaults(handler=cmd_serve)

    phonemize = commands.add_parser("phonemize", help="show the words and phones the speech "
                                                      "front end makes of a text")
    phonemize.add_argument("text", nargs="*", help="the text (default or -: read stdin); "
                                                   "{HH AH0 L OW1} gives exact phones")
    phonemize.add_argument("--json", action="store_true", help="print JSON")
    phonemize.add_argument("--lexicon", help="user lexicon file: 'WORD  PH ON ES' per line, "
                                             "overriding the dictionary")
    phonemize.set_defaults(handler=cmd_phonemize)

    train = commands.add_parser("train", help="train a model and export it to ONNX")
    from kantor.export.__main__ import add_arguments  # the table's options (no torch)

    add_arguments(train)
    train.add_argument("--nproc", type=int, default=1,
                       help="processes sharing the training through torchrun (default 1; "
                            "several nodes: run torchrun -m kantor.export yourself)")
    train.set_defaults(handler=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A crash inside a C library (PortAudio, libjack, ONNX Runtime) prints every thread's
    # Python stack instead of dying silently
    with contextlib.suppress(AttributeError, ValueError, OSError):  # stderr is no file
        faulthandler.enable()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s: %(message)s")
    for noisy in ("onnxscript", "onnx_ir", "torch"):  # the exporter logs every pass
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        return args.handler(args)
    except CliError as error:
        print(f"kantor: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kantor: interrupted", file=sys.stderr)
        return 130
    finally:
        log.debug("done in %.2f s", time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
