"""NeMo's English text normaliser (nemo_text_processing's WFST grammars) on the same
inputs as Kantor's, for benchmarks/text_normalization.py.

Runs inside a Python environment that has ``nemo_text_processing`` (and pynini) installed,
which Kantor's own environment does not need; it imports nothing from Kantor. Reads JSON
from stdin: {"cases": [input, ...], "texts": {name: text, ...}}; writes JSON to stdout:
the grammar set-up time, each case's output and time, and each text's time. The grammars
are compiled from the package's own files into ``--cache-dir`` (minutes, once) and read
from there afterwards; nothing is downloaded.

    /path/to/nemo-env/bin/python benchmarks/text_normalization_nemo.py --cache-dir DIR < in.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time


def sentences(text: str) -> list[str]:
    """NeMo normalises a sentence at a time (its grammars are exponential in input
    length): cut at sentence ends and at most ~500 characters."""
    pieces = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        while len(sentence) > 500:
            cut = sentence.rfind(" ", 0, 500)
            cut = cut if cut > 0 else 500
            pieces.append(sentence[:cut])
            sentence = sentence[cut:]
        if sentence.strip():
            pieces.append(sentence)
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", required=True)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from nemo_text_processing.text_normalization.normalize import Normalizer

    request = json.load(sys.stdin)
    started = time.perf_counter()
    normalizer = Normalizer(input_case="cased", lang="en", cache_dir=args.cache_dir,
                            overwrite_cache=False, post_process=True)
    setup_s = time.perf_counter() - started
    outputs, seconds = [], []
    for case in request["cases"]:
        started = time.perf_counter()
        try:
            outputs.append(normalizer.normalize(case, verbose=False,
                                                punct_post_process=True))
        except Exception as error:  # a grammar that fails on an input is a failed case
            outputs.append(f"<error: {error}>")
        seconds.append(time.perf_counter() - started)
    texts = {}
    for name, text in request.get("texts", {}).items():
        started = time.perf_counter()
        for sentence in sentences(text):
            normalizer.normalize(sentence, verbose=False, punct_post_process=True)
        texts[name] = {"characters": len(text), "seconds": time.perf_counter() - started}
    import nemo_text_processing

    json.dump({"version": getattr(nemo_text_processing, "__version__", "unknown"),
               "setup_seconds": setup_s, "outputs": outputs, "case_seconds": seconds,
               "texts": texts}, sys.stdout)


if __name__ == "__main__":
    main()
