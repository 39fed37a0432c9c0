"""The lexicon (CMU dictionary, user lexicon, inline phonemes, G2P fallback), the front end
that joins it to the normaliser, and `kantor phonemize`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kantor.bridges.cli import main
from kantor.engine.speech.frontend import FrontEnd, SpokenPhrase, Word
from kantor.engine.speech.lexicon import (
    LETTER_NAMES,
    Lexicon,
    LexiconError,
    cmu_dictionary,
    g2p_model_available,
    parse_inline,
)
from kantor.engine.speech.phones import is_phone
from kantor.engine.speech.text import TextError

KANTOR = [sys.executable, "-m", "kantor.bridges.cli"]
OOV = "zorbleflux"  # in no dictionary


@pytest.fixture(scope="module")
def spelling_lexicon() -> Lexicon:
    """No G2P: out-of-vocabulary words are spelled (fast, and the same on every machine)."""
    return Lexicon(fallback=None)


def test_dictionary_gives_the_first_pronunciation(spelling_lexicon):
    assert spelling_lexicon.lookup("hello").phones == ("HH", "AH0", "L", "OW1")
    assert spelling_lexicon.lookup("Hello").source == "dictionary"
    assert spelling_lexicon.pronunciations("hello")[1] == ("HH", "EH0", "L", "OW1")
    assert spelling_lexicon.lookup("don't").phones == ("D", "OW1", "N", "T")
    assert cmu_dictionary() is cmu_dictionary()  # parsed once per process
    assert len(cmu_dictionary()) > 120_000


def test_letters_plurals_and_possessives(spelling_lexicon):
    assert spelling_lexicon.lookup("A") == spelling_lexicon.lookup("A")
    assert spelling_lexicon.lookup("A").phones == ("EY1",)  # the letter, not "a" (AH0)
    assert spelling_lexicon.lookup("a").phones == ("AH0",)
    assert spelling_lexicon.lookup("W").source == "letter"
    assert spelling_lexicon.lookup("Ds").phones == ("D", "IY1", "Z")
    assert spelling_lexicon.lookup("Xs").phones == ("EH1", "K", "S", "IH0", "Z")
    assert spelling_lexicon.lookup("nasa's").phones == ("N", "AE1", "S", "AH0", "Z")
    assert spelling_lexicon.lookup("bach's").phones == ("B", "AA1", "K", "S")
    assert spelling_lexicon.lookup("walrus's").phones[-3:] == ("S", "IH0", "Z")


def test_reads_as_word_tells_acronyms_apart(spelling_lexicon):
    assert spelling_lexicon.reads_as_word("nasa")
    assert not spelling_lexicon.reads_as_word("fbi")  # its entry is its letters
    assert not spelling_lexicon.reads_as_word("xqzt")


def test_inline_phonemes_are_validated():
    assert parse_inline("{hh ah0 l ow1}") == ("HH", "AH0", "L", "OW1")
    assert parse_inline("{pau}") == ("pau",)
    with pytest.raises(LexiconError, match="'QQ1' is not a phone; phones are ARPAbet"):
        parse_inline("{HH QQ1}")
    with pytest.raises(LexiconError, match="stress digits 0-2 go on vowels only"):
        parse_inline("{K1 AE1 T}")
    with pytest.raises(LexiconError, match="stress digits"):
        parse_inline("{K AE5 T}")
    with pytest.raises(LexiconError, match="no phones"):
        parse_inline("{}")


def test_user_lexicon_overrides_the_dictionary(tmp_path):
    lexicon = Lexicon(user={"Tomato": "T AH0 M AA1 T OW2", OOV: ["Z", "AO1", "R", "B"]},
                      fallback=None)
    assert lexicon.lookup("tomato").phones == ("T", "AH0", "M", "AA1", "T", "OW2")
    assert lexicon.lookup("tomato").source == "user"
    assert lexicon.lookup(OOV).source == "user"
    path = tmp_path / "my.lex"
    path.write_text("# my words\nTOMATO  T AH0 M AA1 T OW2\n\nkantor K AA1 N T AO0 R  # name\n")
    lexicon = Lexicon(user=path, fallback=None)
    assert lexicon.lookup("kantor").phones == ("K", "AA1", "N", "T", "AO0", "R")
    assert lexicon.reads_as_word("kantor")


@pytest.mark.parametrize("content, message", [
    ("KANTOR\n", "my.lex:1: 'KANTOR' has no phones"),
    ("ok OW1 K EY1\nbad B AX1 D\n", "my.lex:2 \\(bad\\): 'AX1' is not a phone"),
])
def test_bad_user_lexicon_lines_are_reported_with_their_place(tmp_path, content, message):
    path = tmp_path / "my.lex"
    path.write_text(content)
    with pytest.raises(LexiconError, match=message):
        Lexicon(user=path)


def test_missing_user_lexicon_is_a_lexicon_error(tmp_path):
    with pytest.raises(LexiconError, match="cannot read the user lexicon"):
        Lexicon(user=tmp_path / "absent.lex")
    with pytest.raises(LexiconError, match=r"user lexicon \(word\)"):
        Lexicon(user={"word": "W ER1 D XX"})


def test_out_of_vocabulary_words_go_to_the_g2p_or_are_spelled():
    lexicon = Lexicon()  # the default: the neural G2P when its model is installed
    pronunciation = lexicon.lookup(OOV)
    assert pronunciation.phones and all(is_phone(p) for p in pronunciation.phones)
    if g2p_model_available():
        assert pronunciation.source == "g2p"
        assert pronunciation.phones[0] == "Z"
    else:
        assert pronunciation.source == "spelled"
        assert pronunciation.phones[:3] == (*LETTER_NAMES["Z"], "OW1")


def test_an_injected_fallback_is_used_and_its_output_checked():
    calls = []

    def guess(word: str) -> list[str]:
        calls.append(word)
        return ["Z", "AO1", "R", "B", "AH0", "L", "F", "L", "AH1", "K", "S"]

    lexicon = Lexicon(fallback=guess)
    assert lexicon.lookup(OOV) == lexicon.lookup(OOV.upper())
    assert lexicon.lookup(OOV).source == "g2p"
    assert calls == [OOV]  # cached
    assert lexicon.lookup("hello").source == "dictionary"
    broken = Lexicon(fallback=lambda word: ["NOT", "PHONES"])
    with pytest.raises(LexiconError, match="G2P output for 'zorbleflux'"):
        broken.lookup(OOV)


def test_spelling_fallback(spelling_lexicon):
    pronunciation = spelling_lexicon.lookup("xqzt")
    assert pronunciation.source == "spelled"
    assert pronunciation.phones == (*LETTER_NAMES["X"], *LETTER_NAMES["Q"], *LETTER_NAMES["Z"],
                                    *LETTER_NAMES["T"])


@pytest.fixture(scope="module")
def frontend(spelling_lexicon) -> FrontEnd:
    return FrontEnd(spelling_lexicon)


def test_front_end_gives_phrases_of_pronounced_words(frontend):
    phrases = frontend.phrases("Hello, Dr. Smith! Did NASA pay the FBI $5?")
    assert [p.break_after for p in phrases] == ["minor", "major", "end"]
    assert [p.question for p in phrases] == [False, False, True]
    assert phrases[0].words == (Word("hello", ("HH", "AH0", "L", "OW1"), "dictionary"),)
    texts = [w.text for w in phrases[2].words]
    assert texts == ["did", "nasa", "pay", "the", "F", "B", "I", "five", "dollars"]
    assert phrases[2].words[4].source == "letter"
    assert phrases[1].phones[:5] == ["D", "AA1", "K", "T", "ER0"]
    assert isinstance(phrases[0], SpokenPhrase)


def test_front_end_inline_phonemes_and_errors(frontend):
    (phrase,) = frontend("Say {T AH0 M EY1 T OW0} now.")
    assert phrase.words[1] == Word("{T AH0 M EY1 T OW0}", ("T", "AH0", "M", "EY1", "T", "OW0"),
                                   "inline")
    with pytest.raises(LexiconError, match="'QQ' is not a phone"):
        frontend("Say {T QQ} now.")
    with pytest.raises(TextError, match="unmatched"):
        frontend("Say {T AH0 now.")


def test_front_end_on_empty_and_huge_text(frontend):
    assert frontend.phrases("") == [] and frontend.phrases(" 😀 \n") == []
    sentence = "The 3 quick foxes paid $4.50, and the FBI's agent said no; why? "
    text = sentence * (1_000_000 // len(sentence))
    phrases = frontend.phrases(text)
    assert len(phrases) == 3 * (len(text) // len(sentence))
    assert all(w.phones for p in phrases for w in p.words)


def phonemize(*args: str, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*KANTOR, "phonemize", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_phonemize_prints_words_phones_and_sources(capsys):
    assert main(["phonemize", "Hello, FBI {K AE1 N T ER0}?"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["hello", "HH", "AH0", "L", "OW1", "dictionary"]
    assert lines[1].strip() == "-- minor break --"
    assert lines[2].split() == ["F", "EH1", "F", "letter"]
    assert lines[5].split() == ["{K", "AE1", "N", "T", "ER0}", "K", "AE1", "N", "T", "ER0",
                                "inline"]
    assert lines[6].strip() == "-- end break, question --"


def test_phonemize_json_and_stdin(tmp_path):
    lexicon = tmp_path / "my.lex"
    lexicon.write_text("hello  HH EH1 L OW0\n")
    result = phonemize("--json", "--lexicon", str(lexicon), "-",
                       stdin="Hello there. It's 3:30 pm!\n")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    first, second = report["phrases"]
    assert first["words"][0] == {"text": "hello", "phones": ["HH", "EH1", "L", "OW0"],
                                 "source": "user"}
    assert first["break_after"] == "major" and second["break_after"] == "end"
    assert [w["text"] for w in second["words"]] == ["it's", "three", "thirty", "P", "M"]
    assert second["mark"] == "!" and not second["question"]


def test_phonemize_out_of_vocabulary_word():
    result = phonemize(OOV)
    assert result.returncode == 0, result.stderr
    (line, _) = result.stdout.splitlines()
    assert line.split()[0] == OOV
    if g2p_model_available():
        assert line.split()[-1] == "g2p"
    else:
        assert line.split()[-1] == "spelled" and "G2P model is not installed" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["Say {HH QQ1} now"], "inline pronunciation {HH QQ1}: 'QQ1' is not a phone"),
    (["Say {HH AH0 now"], "unmatched '{'"),
    (["--lexicon", "absent.lex", "hi"], "cannot read the user lexicon"),
])
def test_phonemize_errors_are_one_line(tmp_path, args, message):
    result = phonemize(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kantor: error:") and message in lines[0]


def test_phonemize_empty_text():
    result = phonemize("-", stdin="   \n")
    assert result.returncode == 0 and result.stdout == ""
    assert "no words" in result.stderr
    result = phonemize("--json", "-", stdin="")
    assert json.loads(result.stdout) == {"phrases": []}
