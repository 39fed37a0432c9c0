"""`kantor serve` under abuse and over time: MIDI floods, a soak with live playing and
speech, memory over time, peak memory per harmonise request, a JACK server that dies.

One real service (`kantor serve` with its audio output on a private JACK server, dummy
driver, 1024-frame periods) is started. Then:

1. **Floods**: a player sends note-on/note-off pairs at 3000 notes/s (while the service
   speaks a long text on its output and a WebSocket client pulls speech) and at 10,000
   notes/s (four runs), for ``--flood-seconds`` each. JACK's own ``jack_midi_dump``
   receives Kantor's output. Per run: notes sent, note-ons Kantor saw arrive, messages it
   handed to its port (``messages_sent``), messages the receiver got (the difference is
   what was lost on the way out), what Kantor dropped and counted, and the notes still
   sounding at the receiver a second after the last note-off (stuck notes).
2. **Soak** for ``--soak-seconds`` (600 by default): a melody note every 125 ms, a
   WebSocket client streaming sentences back to back, a sentence spoken on the output
   every 10 s, a harmonisation uploaded every 30 s, a malformed request every 5 s. Every
   5 s: resident memory of the service and of its live process, live latency p99, error
   counters. Afterwards: stuck notes, 5xx answers, tracebacks in the service's output, and
   memory growth (first to last minute).
3. **Peak memory per harmonise request** on every hostile file and the largest uploads
   (``python -m tests.request_memory``, 16 chains).
4. **JACK dies**: the server is killed (SIGKILL, its slot cleaned) and started again: how
   long until the status says so, until the ports are back, and SIGTERM to exit while the
   server is gone again.

Targets (issue 12): zero stuck notes, zero 5xx, zero tracebacks; peak memory per request
<= 500 MB; SIGTERM ends serve within 10 s; ports back within 5 s of the server. Writes
reliability.json and reliability.png.

    python benchmarks/reliability.py [--soak-seconds 600] [--flood-seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import rtmidi
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.hostile import HOSTILE_FILES  # the repository's test harness
from harness.jack_client import PLAYER_SCRIPT
from harness.serve_process import ServeProcess
from kantor.bridges.jack import JackServer

MELODY = [67, 67, 66, 64, 62, 67, 69, 71, 72, 71, 69, 67]
LONG_TEXT = ("Kantor keeps playing while it speaks. This paragraph is long enough to keep "
             "the output busy for a good while, sentence after sentence. ") * 6
JSON = {"Content-Type": "application/json"}


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


_RECEIVER = """
import json, os, sys, jack
client = jack.Client(sys.argv[1], no_start_server=True)
port = client.midi_inports.register("input")
received, sounding = [0], set()

@client.set_process_callback
def process(frames):
    for _, buffer in port.incoming_midi_events():
        data = bytes(buffer)
        if len(data) == 3 and data[0] & 0xF0 in (0x80, 0x90):
            received[0] += 1
            key = (data[0] & 0x0F, data[1])
            if data[0] & 0xF0 == 0x90 and data[2]:
                sounding.add(key)
            else:
                sounding.discard(key)

client.activate()
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps({"received": received[0], "sounding": len(sounding)}), flush=True)
os._exit(0)
"""


class Receiver:
    """A JACK MIDI input in a process of its own (JACK-Client; its process callback has
    the interpreter to itself), counting note messages and the notes left sounding.
    jack_midi_dump drops under floods (a 512-message ring and a printf each), so it
    cannot tell Kantor's losses from its own."""

    def __init__(self, server: JackServer, name: str) -> None:
        self.port = f"{name}:input"
        self.process = subprocess.Popen([sys.executable, "-c", _RECEIVER, name],
                                        env=server.env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def report(self) -> dict:
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()  # it leaves with os._exit: no JACK teardown to wait on
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def live_status(http: httpx.Client) -> dict:
    return http.get("/v1/status").json()["live"]


def flood(service: ServeProcess, server: JackServer, http: httpx.Client, rate: float,
          seconds: float, speech: bool) -> dict:
    """Note pairs at ``rate`` notes/s into the service; what arrived, went out, stuck."""
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="floodplayer")
    player.open_virtual_port("out")
    receiver = Receiver(server, "floodmon")
    subprocess.run(["jack_connect", "floodplayer:out", service.midi_in], env=server.env,
                   check=True)
    subprocess.run(["jack_connect", service.midi_out, receiver.port], env=server.env,
                   check=True)
    time.sleep(0.5)
    before = live_status(http)
    stop_speech = threading.Event()
    talker = None
    if speech:
        http.post("/v1/speak", json={"text": LONG_TEXT})

        def pull() -> None:
            with connect(service.ws_url) as ws:
                while not stop_speech.is_set():
                    ws.send("The flood goes on while a client listens to this sentence.")
                    ws.recv(timeout=60)  # start
                    while isinstance(ws.recv(timeout=60), bytes):
                        pass

        talker = threading.Thread(target=pull, daemon=True)
        talker.start()
    sent = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            pitch = 55 + sent % 24
            player.send_message([0x90, pitch, 90])
            player.send_message([0x80, pitch, 0])
            sent += 1
        time.sleep(0.001)
    time.sleep(1.5)  # the queue drains, JACK delivers
    stop_speech.set()
    after = live_status(http)
    report = receiver.report()
    stuck, received = report["sounding"], report["received"]
    receiver.stop()
    player.close_port()
    player.delete()
    if talker is not None:
        talker.join(70)
        http.post("/v1/speech/cancel", headers=JSON)
    handed = after["messages_sent"] - before["messages_sent"]
    dropped = {k: after["dropped"].get(k, 0) - before["dropped"].get(k, 0)
               for k in after["dropped"]}
    return {"rate_notes_per_s": rate, "seconds": seconds, "speech": speech,
            "notes_sent": sent,
            "note_ons_arrived": after["note_ons_arrived"] - before["note_ons_arrived"],
            "messages_sent_by_kantor": handed, "messages_received": received,
            "lost_on_the_way_out": handed - received,
            "jack_xruns": (after["jack"] or {}).get("xruns", 0)
            - (before["jack"] or {}).get("xruns", 0),
            "dropped_and_counted": {k: v for k, v in dropped.items() if v},
            "stuck_notes": stuck,
            # notes Kantor itself still sounds: their note-offs were lost on the way in
            "kantor_sounding_after": after["sounding"]}


def soak(service: ServeProcess, server: JackServer, http: httpx.Client, seconds: float,
         harmonize_every: float = 30.0) -> dict:
    """Live playing, streaming and spoken speech, uploads and bad requests, sampled."""
    status = http.get("/v1/status").json()
    service_pid, live_pid = status["service"]["pid"], status["live"]["pid"]
    # the player in a process of its own: rtmidi's JACK send spins for ever if JACK
    # zombifies its client (seen once under 600 xruns), and must not stop the soak
    player = subprocess.Popen([sys.executable, "-c", PLAYER_SCRIPT, "soakplayer"], env=server.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert player.stdout.readline().strip() == "ready"
    receiver = Receiver(server, "soakmon")
    subprocess.run(["jack_connect", "soakplayer:out", service.midi_in], env=server.env,
                   check=True)
    subprocess.run(["jack_connect", service.midi_out, receiver.port], env=server.env,
                   check=True)
    stop = threading.Event()
    counts = {"ws_streams": 0, "ws_errors": 0, "spoken": 0, "harmonized": 0, "bad": 0,
              "5xx": 0, "notes": 0}

    def stream() -> None:
        with connect(service.ws_url) as ws:
            while not stop.is_set():
                ws.send("A client listens to one sentence after another, all day long.")
                reply = json.loads(ws.recv(timeout=60))  # start (or an error)
                while reply.get("type") == "start" or reply.get("type") is None:
                    raw = ws.recv(timeout=60)
                    reply = json.loads(raw) if isinstance(raw, str) else {"type": None}
                counts["ws_streams" if reply["type"] == "end" else "ws_errors"] += 1

    def play() -> None:
        i = 0
        while not stop.is_set():
            pitch = MELODY[i % len(MELODY)]
            player.stdin.write(f"144 {pitch} 90\n")
            player.stdin.flush()
            time.sleep(0.1)
            player.stdin.write(f"128 {pitch} 0\n")
            player.stdin.flush()
            time.sleep(0.025)
            counts["notes"] += 1
            i += 1

    threads = [threading.Thread(target=stream, daemon=True),
               threading.Thread(target=play, daemon=True)]
    for thread in threads:
        thread.start()
    hostile = list(HOSTILE_FILES.values())
    upload = (Path(__file__).resolve().parents[1] / "engine" / "assets" / "melodies"
              / "old-hundredth.musicxml").read_bytes()
    samples = []
    started = time.monotonic()
    last_speak = last_harmonize = last_bad = -1e9
    while (elapsed := time.monotonic() - started) < seconds:
        responses = []
        if elapsed - last_speak >= 10:
            responses.append(http.post("/v1/speak", json={"text": "A sentence aloud."}))
            counts["spoken"] += 1
            last_speak = elapsed
        if elapsed - last_harmonize >= harmonize_every:
            responses.append(http.post("/v1/harmonize?iterations=5", content=upload,
                                       headers={"Content-Type": "audio/midi"}))
            counts["harmonized"] += 1
            last_harmonize = elapsed
        if elapsed - last_bad >= 5:
            data, _, _ = hostile[counts["bad"] % len(hostile)]
            responses.append(http.post("/v1/harmonize", content=data,
                                       headers={"Content-Type": "audio/midi"}))
            counts["bad"] += 1
            last_bad = elapsed
        counts["5xx"] += sum(r.status_code >= 500 for r in responses)
        live = live_status(http)
        samples.append({"t_s": round(elapsed, 1), "service_rss_mb": rss_mb(service_pid),
                        "live_rss_mb": rss_mb(live_pid),
                        "live_p99_ms": live["latency_ms"].get("p99")})
        time.sleep(5)
    stop.set()
    for thread in threads:
        thread.join(70)
    time.sleep(1.5)
    report = receiver.report()
    stuck = report["sounding"]  # every note was released: none may sound
    counts["messages_received"] = report["received"]
    receiver.stop()
    player.kill()  # by its id
    player.wait()
    minute = max(1, int(60 / 5))
    first = [s["service_rss_mb"] for s in samples[:minute]]
    last = [s["service_rss_mb"] for s in samples[-minute:]]
    first_live = [s["live_rss_mb"] for s in samples[:minute]]
    last_live = [s["live_rss_mb"] for s in samples[-minute:]]
    errors = http.get("/v1/status").json()["errors"]
    return {"seconds": seconds, "counts": counts, "stuck_notes": stuck,
            "service_rss_mb_first_minute": round(float(np.mean(first)), 1),
            "service_rss_mb_last_minute": round(float(np.mean(last)), 1),
            "live_rss_mb_first_minute": round(float(np.mean(first_live)), 1),
            "live_rss_mb_last_minute": round(float(np.mean(last_live)), 1),
            "errors_counted": errors, "samples": samples}


def request_memory() -> dict:
    result = subprocess.run([sys.executable, "-m", "tests.request_memory"],
                            capture_output=True, text=True, timeout=900,
                            cwd=Path(__file__).resolve().parents[1])
    report = json.loads(result.stdout)
    requests = report["requests"]
    return {"chains": report["chains"],
            "max_peak_growth_mb": max(r["peak_growth_mb"] for r in requests.values()),
            "max_peak_growth_mb_refused": max(r["peak_growth_mb"] for r in requests.values()
                                              if r["outcome"].startswith("refused")),
            "requests": requests}


def jack_dies(service: ServeProcess, server: JackServer, http: httpx.Client) -> dict:
    """Kill the server, start it again, kill it again and stop the service."""
    killed = time.monotonic()
    server.kill(signal.SIGKILL)
    while not http.get("/v1/status").json()["live"]["lost"]:
        time.sleep(0.01)
    noticed = time.monotonic() - killed
    server.start()
    up = time.monotonic()
    while service.midi_in not in server.ports() or service.midi_out not in server.ports():
        time.sleep(0.02)
    back = time.monotonic() - up
    server.kill(signal.SIGTERM)
    time.sleep(1.0)
    stopping = time.monotonic()
    code = service.stop(timeout=60)
    return {"loss_noticed_in_status_s": round(noticed, 3), "ports_back_s": round(back, 3),
            "sigterm_to_exit_with_jack_gone_s": round(time.monotonic() - stopping, 3),
            "exit_code": code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--flood-seconds", type=float, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--note", default="", help="said in the JSON (e.g. why it was short)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = JackServer().start()
    os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
    service = ServeProcess(jack_server=server.name)
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "jack_period": server.period},
                     "note": args.note}
    try:
        with httpx.Client(base_url=service.url, timeout=120) as http:
            floods = [flood(service, server, http, 3000, args.flood_seconds, speech=True)]
            for _ in range(4):
                floods.append(flood(service, server, http, 10_000, args.flood_seconds,
                                    speech=False))
            results["floods"] = floods
            print(json.dumps(floods, indent=1), flush=True)
            results["soak"] = soak(service, server, http, args.soak_seconds)
            print(json.dumps({k: v for k, v in results["soak"].items() if k != "samples"},
                             indent=1), flush=True)
            (out / "reliability.json").write_text(json.dumps(results, indent=1) + "\n")
            results["jack"] = jack_dies(service, server, http)
            print(json.dumps(results["jack"]), flush=True)
        text = service.text()
        results["tracebacks_in_service_output"] = text.count("Traceback")
        (out / "reliability.json").write_text(json.dumps(results, indent=1) + "\n")
        results["request_memory"] = request_memory()
        print(json.dumps({k: v for k, v in results["request_memory"].items()
                          if k != "requests"}), flush=True)
    finally:
        if service.process.poll() is None:
            service.stop()
        server.stop()
    (out / "reliability.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out / "reliability.png")
    print(f"wrote {out / 'reliability.json'} and reliability.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = results["soak"]["samples"]
    t = [s["t_s"] / 60 for s in samples]
    figure, (memory, latency, floods) = plt.subplots(1, 3, figsize=(15, 4.2))
    memory.plot(t, [s["service_rss_mb"] for s in samples], label="service process")
    memory.plot(t, [s["live_rss_mb"] for s in samples], label="live process")
    memory.set(xlabel="soak time (min)", ylabel="resident memory (MB)",
               title="Memory over the soak")
    memory.legend()
    latency.plot(t, [s["live_p99_ms"] for s in samples])
    latency.set(xlabel="soak time (min)", ylabel="live latency p99 (ms; last 65536, floods incl.)",
                title="Live MIDI while speaking")
    labels = [f"{f['rate_notes_per_s'] // 1000:g}k/s" + (" +speech" if f["speech"] else "")
              for f in results["floods"]]
    x = np.arange(len(labels))
    floods.bar(x - 0.2, [f["messages_sent_by_kantor"] for f in results["floods"]], 0.4,
               label="sent by Kantor")
    floods.bar(x + 0.2, [f["messages_received"] for f in results["floods"]], 0.4,
               label="received (a JACK client of its own)")
    for i, f in enumerate(results["floods"]):
        floods.annotate(f"stuck {f['stuck_notes']}", (i, f["messages_received"]),
                        ha="center", va="bottom", fontsize=8)
    floods.set_xticks(x, labels)
    floods.set(ylabel="MIDI messages", title="Floods")
    floods.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
