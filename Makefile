# Kantor: set-up, run, test. `make run` needs only the runtime; `make test` adds training.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the runtime uses (JACK and PortAudio for live MIDI and speech).
SYSTEM_RUNTIME := jackd2 libportaudio2 libsndfile1
# ...and what the tests use on top (the speech issues add festival, sox, ...).
SYSTEM_DEV := $(SYSTEM_RUNTIME) festival festvox-us-slt-hts fortunes wordnet-base flite \
              espeak-ng sox chromium
OUT ?= out

.PHONY: run test venv install-runtime install-dev system-runtime system-dev lint \
        train-harmonizer eval-harmonizer bench-harmonizer train-live train-tutor bench-live bench-serve bench-reliability bench-tts clean \
        speech-corpus train-voice bench-vocoder train-g2p

SERVE_ARGS ?=

run: install-runtime  ## harmonise the bundled tune to out/, then run the service (live MIDI, speech, HTTP/OSC)
	$(BIN)/kantor harmonize -o $(OUT)/old-hundredth.mid -o $(OUT)/old-hundredth.musicxml
	$(BIN)/kantor serve --start-jack $(SERVE_ARGS)

test: install-dev  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/pytest -q

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

install-runtime: venv system-runtime
	$(BIN)/pip install -q -e .

install-dev: venv system-dev
	# pyworld's build imports pkg_resources: build it without isolation, setuptools<81
	$(BIN)/pip install -q 'setuptools<81' wheel cython numpy
	$(BIN)/pip install -q --no-build-isolation 'pyworld>=0.3.4'
	$(BIN)/pip install -q -e '.[train,dev]'

# Debian packages are installed only as root (CI, containers); otherwise say what to run.
define apt_install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else \
	  for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo "note: Debian package $$p is missing (sudo apt-get install $$p)"; done; \
	fi
endef

system-runtime:
	$(call apt_install,$(SYSTEM_RUNTIME))

system-dev:
	$(call apt_install,$(SYSTEM_DEV))

lint: install-dev
	$(BIN)/ruff check .

train-harmonizer: install-dev  ## the shipped chorale models (preset long: ~71 min on one CPU thread)
	$(BIN)/kantor train harmonizer --preset long --out .cache/models/chorale

eval-harmonizer: install-dev
	$(BIN)/kantor eval harmonizer -o benchmarks/results/harmonizer-eval.json

bench-harmonizer: install-dev
	$(BIN)/python benchmarks/harmonizer_speed.py
	$(BIN)/python benchmarks/harmonizer_sweep.py

train-live: install-dev  ## the live model (~50 min on one CPU thread)
	$(BIN)/kantor train live-harmonizer --out .cache/models/chorale-live

train-tutor: install-dev  ## the live networks tuned by RL at three KL weights, and the table (~25 min each on one thread)
	for preset in loose default tight; do \
		$(BIN)/kantor train live-tutor --preset $$preset --run-dir .cache/runs/chorale-live-tutor-$$preset \
			--out .cache/models/chorale-live-tuned-$$preset || exit 1; done
	$(BIN)/python benchmarks/sequence_tutor.py .cache/models/chorale-live-tuned-loose \
		.cache/models/chorale-live-tuned-default .cache/models/chorale-live-tuned-tight

bench-live: install-dev  ## 5000 notes through JACK at 128- and 1024-frame periods (~12 min)
	$(BIN)/python benchmarks/live_latency.py

bench-serve: install-dev  ## kantor serve: WebSocket first audio, live MIDI with/without speech (~8 min)
	$(BIN)/python benchmarks/serve.py

bench-reliability: install-dev  ## floods, a 10-minute soak, memory per request, a JACK server that dies (~13 min)
	$(BIN)/python benchmarks/reliability.py

speech-corpus: install-dev  ## render 10,300 sentences with Festival (~15 min) and analyse them (~20-60 min)
	$(BIN)/python -m kantor.export.speech.festival
	$(BIN)/python -m kantor.export.speech.analysis

train-voice: speech-corpus  ## the duration/F0 and acoustic models of the voice -> .cache/models/voice
	$(BIN)/kantor train voice-prosody --out .cache/models/voice
	$(BIN)/kantor train voice-acoustic --out .cache/models/voice

train-g2p: install-dev  ## letters-to-phones model from CMUdict -> .cache/models/g2p (~8 min on one H200; days on 2 cores)
	$(BIN)/kantor train g2p --out .cache/models/g2p

bench-vocoder: install-dev  ## Kantor's vocoder vs WORLD (C++) on 100 held-out sentences
	$(BIN)/python benchmarks/vocoder.py --sentences 100 --out benchmarks/results

bench-tts: install-dev  ## Kantor vs Festival/flite/espeak-ng on 100 held-out sentences (needs the corpus)
	$(BIN)/python benchmarks/tts.py --sentences 100 --out benchmarks/results

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
