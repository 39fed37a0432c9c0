"""English text normalisation: raw text -> phrases of spoken words.

    normalize("Dr. Smith paid $3.50 on Jan. 5, 2024!")
    # [Phrase(["doctor", "smith", "paid", "three", "dollars", "fifty", "cents", "on",
    #          "january", "fifth"], "minor", ","), Phrase(["twenty", "twenty", "four"], "end", "!")]

What comes out: lower-case words as the dictionary spells them, single upper-case letters
(``"F"``) for letters that are spelled out (acronyms, ``a.m.``), and inline phonemes
(``"{HH AH0 L OW1}"``) passed through untouched for the lexicon. Numbers, ordinals, years,
money, times, dates, fractions, units, abbreviations, acronyms and symbols are written out
as words. Punctuation becomes phrase breaks: ``major`` (. ! ? ;), ``minor`` (, : dashes,
parentheses) and ``end`` after the last phrase; a phrase longer than ``MAX_PHRASE_WORDS``
is split, before a conjunction where one is near.

Unicode is NFKC-normalised, curly quotes and dashes become ASCII, accented letters are
folded (é -> e, ß -> ss); emoji, other symbols, control characters and letters outside
the Latin alphabet are dropped and counted (one warning per call). The work is linear in
the length of the text: one regex scan and one pass over its tokens.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

log = logging.getLogger(__name__)

MAX_PHRASE_WORDS = 30
BREAKS = ("minor", "major", "end")  # in rising strength


class TextError(ValueError):
    """Text the front end cannot read as meant (e.g. an unclosed inline ``{...}``)."""


@dataclass
class Phrase:
    """Words spoken without a pause, and the pause that follows them.

    ``break_after`` is "minor", "major" or "end"; ``mark`` is the punctuation that closed
    the phrase ("." "?" "!" "?!" ";" "," ":" "--" "(" ")" "..." or "" for none).
    """

    words: list[str]
    break_after: str
    mark: str = ""

    @property
    def question(self) -> bool:
        """True when the phrase ends in a question mark (rising intonation)."""
        return "?" in self.mark


# ---------------------------------------------------------------------------- numbers

def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ONES = _words("zero one two three four five six seven eight nine ten eleven twelve "
               "thirteen fourteen fifteen sixteen seventeen eighteen nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
         "ninety")
_SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion")
# Digits past this many are read one by one (and never parsed: int() refuses huge strings).
_LONGEST_NUMBER = 3 * len(_SCALES)
_IRREGULAR_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                       "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def digits(text: str) -> list[str]:
    """Read a string of digits one by one: ``"007"`` -> zero zero seven."""
    return [_ONES[int(c)] for c in text if c.isdigit()]


def _under_thousand(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [_ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens])
        if ones:
            words.append(_ONES[ones])
    elif rest:
        words.append(_ONES[rest])
    return words


def cardinal(n: int) -> list[str]:
    """``123`` -> one hundred twenty three; past the quadrillions, digit by digit."""
    if n < 0:
        return ["minus", *cardinal(-n)]
    if n < 20:
        return [_ONES[n]]
    if n >= 1000 ** len(_SCALES):
        return digits(str(n))
    groups = []
    while n:
        n, group = divmod(n, 1000)
        groups.append(group)
    words: list[str] = []
    for scale in range(len(groups) - 1, -1, -1):
        if groups[scale]:
            words += _under_thousand(groups[scale])
            if _SCALES[scale]:
                words.append(_SCALES[scale])
    return words


def ordinal(n: int) -> list[str]:
    """``22`` -> twenty second."""
    words = cardinal(n)
    last = words[-1]
    if last in _IRREGULAR_ORDINALS:
        words[-1] = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return words


def year(n: int) -> list[str]:
    """``1984`` -> nineteen eighty four, ``1905`` -> nineteen oh five, ``1900`` ->
    nineteen hundred, ``2005`` -> two thousand five, ``2024`` -> twenty twenty four."""
    century, rest = divmod(n, 100)
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    if rest == 0:
        return [*cardinal(century), "hundred"]
    if rest < 10:
        return [*cardinal(century), "oh", _ONES[rest]]
    return [*cardinal(century), *cardinal(rest)]


def decimal(text: str) -> list[str]:
    """``"3.14"`` -> three point one four; ``"1,234"`` -> one thousand two hundred ...;
    integers with a leading zero (``"007"``) are read digit by digit."""
    whole, _, fraction = text.replace(",", "").partition(".")
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) > _LONGEST_NUMBER:
        words = digits(whole)
    else:
        words = cardinal(int(whole or "0"))
    if fraction:
        words += ["point", *digits(fraction)]
    return words


def plural(word: str) -> str:
    """``"eighty"`` -> eighties, ``"six"`` -> sixes, ``"hundred"`` -> hundreds."""
    if word.endswith("y"):
        return word[:-1] + "ies"
    if word.endswith(("x", "s")):
        return word + "es"
    return word + "s"


def fraction(numerator: int, denominator: int) -> list[str]:
    """``3, 4`` -> three quarters; ``1, 2`` -> one half; ``5, 8`` -> five eighths."""
    one = numerator == 1
    if denominator == 2:
        name = ["half" if one else "halves"]
    elif denominator == 4:
        name = ["quarter" if one else "quarters"]
    else:
        name = ordinal(denominator)
        if not one:
            name[-1] = plural(name[-1])
    return [*cardinal(numerator), *name]


# ------------------------------------------------------------------------- word tables

_MONTHS = _words("january february march april may june july august september october "
                 "november december")
_MONTH_BY_NAME = {m: m for m in _MONTHS} | {
    "jan": "january", "feb": "february", "mar": "march", "apr": "april", "jun": "june",
    "jul": "july", "aug": "august", "sep": "september", "sept": "september",
    "oct": "october", "nov": "november", "dec": "december"}

# Titles read the same with or without a period when a name follows (Mr Smith, Dr. Who).
_TITLES = {"mr": "mister", "mrs": "missus", "ms": "ms", "dr": "doctor", "prof": "professor",
           "st": "saint", "mt": "mount", "gen": "general", "capt": "captain",
           "lt": "lieutenant", "col": "colonel", "sgt": "sergeant", "rev": "reverend",
           "sen": "senator", "rep": "representative", "gov": "governor",
           "pres": "president", "hon": "honorable", "fr": "father"}
# After a street name (Main St., Mulholland Dr.) these two are places, not titles.
_STREETS = {"st": "street", "dr": "drive"}
# Expanded only with their period (or, for the last few, always).
_ABBREVIATIONS = {
    "jr": "junior", "sr": "senior", "ave": "avenue", "rd": "road", "blvd": "boulevard",
    "ln": "lane", "hwy": "highway", "inc": "incorporated", "ltd": "limited",
    "co": "company", "corp": "corporation", "dept": "department", "univ": "university",
    "bros": "brothers", "approx": "approximately", "est": "established", "fig": "figure",
    "figs": "figures", "vol": "volume", "ch": "chapter", "pp": "pages", "cf": "compare",
    "min": "minutes", "hr": "hour", "hrs": "hours", "sec": "seconds", "wk": "week",
    "yr": "year", "yrs": "years", "etc": "et cetera", "vs": "versus",
}
_ABBREVIATIONS_WITHOUT_PERIOD = frozenset(("etc", "vs"))
# These stand inside a sentence: their period never ends one (Ali vs. Frazier).
_MID_SENTENCE = frozenset(_words("vs cf approx fig figs vol ch pp est"))
_DOTTED = {"e.g.": ["for", "example"], "i.e.": ["that", "is"], "a.k.a.": ["also", "known",
           "as"], "et al.": ["et", "al"], "p.s.": ["P", "S"]}

# Units read after a number ("5 kg" -> five kilograms): (singular, plural) words.
_UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"), "mi": ("mile", "miles"), "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "ml": ("milliliter", "milliliters"), "l": ("liter", "liters"),
    "hz": ("hertz", "hertz"), "khz": ("kilohertz", "kilohertz"),
    "mhz": ("megahertz", "megahertz"), "ghz": ("gigahertz", "gigahertz"),
    "kb": ("kilobyte", "kilobytes"), "mb": ("megabyte", "megabytes"),
    "gb": ("gigabyte", "gigabytes"), "tb": ("terabyte", "terabytes"),
    "ms": ("millisecond", "milliseconds"), "sec": ("second", "seconds"),
    "secs": ("second", "seconds"), "min": ("minute", "minutes"), "mins": ("minute", "minutes"),
    "hr": ("hour", "hours"), "hrs": ("hour", "hours"), "yr": ("year", "years"),
    "yrs": ("year", "years"), "db": ("decibel", "decibels"),
}

# Money: symbol -> (unit, units, sub-unit, sub-units).
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents"),
               "¥": ("yen", "yen", "", "")}
_MONEY_SCALES = {"thousand": "thousand", "million": "million", "billion": "billion",
                 "trillion": "trillion", "k": "thousand", "m": "million", "mn": "million",
                 "bn": "billion", "b": "billion"}

_SYMBOLS = {"&": ["and"], "+": ["plus"], "=": ["equals"], "@": ["at"], "%": ["percent"],
            "×": ["times"], "÷": ["divided", "by"], "±": ["plus", "or", "minus"],
            "<": ["less", "than"], ">": ["greater", "than"], "°": ["degrees"],
            "#": ["hash"], "¢": ["cents"]}

# Two-letter capitals that are words when shouted rather than initials (US, IT, AM are).
_CAPITAL_WORDS = frozenset(_words("NO GO SO DO BE WE HE ME MY OF ON TO UP OR AN AS AT BY "
                                   "IF IN IS OH OK"))
_SPELLED_WORDS = {"www": "WWW", "http": "HTTP", "https": "HTTPS", "ftp": "FTP"}
# Counting words after which a Roman numeral is a cardinal (World War II, Chapter IV).
_COUNTING_WORDS = frozenset(_words("chapter part volume book act scene war phase type class "
                                   "level step article section appendix track psalm"))
_ROMAN = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
# Capitalised words that usually open a sentence: after "etc." they mean a new one began.
_SENTENCE_OPENERS = frozenset(_words("The A An This That These Those There Then Thus He She It "
                                     "We You They His Her Its Our Their My But And Or So Yet "
                                     "In On At For If When While After Before As What Who Why "
                                     "How Where Which Some Many Most All No Not One Each Every "
                                     "Now Today However Also Still Such Here"))
# Long phrases are split before one of these when one is near the limit.
_SPLIT_BEFORE = frozenset(_words("and but or nor because which that while when where who "
                                  "whom whose so then if although though since until unless "
                                  "after before whereas"))


def _roman_value(text: str) -> int:
    values = [_ROMAN_VALUES[c] for c in text]
    return sum(-v if i + 1 < len(values) and v < values[i + 1] else v
               for i, v in enumerate(values))


# --------------------------------------------------------------------------- unicode

_PUNCTUATION_MAP = str.maketrans({
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'", "´": "'",
    "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "−": "-", "—": " -- ", "―": " -- ",
    "…": "...", "⁄": "/", "∕": "/", "·": " ", "•": " ", "\u00ad": "",
})
_FOLDED_LETTERS = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe",
                   "Œ": "OE", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th",
                   "ð": "d", "Ð": "D", "ı": "i", "ſ": "s", "ŋ": "ng"}
_KEPT_SYMBOLS = frozenset("£€¥¢°×÷±")
# Joiners and variation selectors hold emoji sequences together: dropped without a count.
_SILENT = frozenset("\u200b\u200c\u200d\u2060\ufeff\ufe0e\ufe0f")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_WHITESPACE_CONTROL = str.maketrans({"\x0b": "\n", "\x0c": "\n", "\x1c": "\n", "\x1d": "\n",
                                     "\x1e": "\n", "\x1f": "\n", "\x85": "\n"})


def _fold_char(char: str) -> tuple[str, str | None]:
    """One non-ASCII character -> (its ASCII replacement, what was dropped or None)."""
    if char in _FOLDED_LETTERS:
        return _FOLDED_LETTERS[char], None
    if char in _KEPT_SYMBOLS:
        return char, None
    if char in _SILENT:
        return "", None
    category = unicodedata.category(char)
    if category == "Nd":
        return str(unicodedata.decimal(char)), None
    if category.startswith("Z"):
        return " ", None
    if category == "Mn":  # a combining mark left over: part of a letter already folded
        return "", None
    if category.startswith("L"):
        folded = "".join(c for c in unicodedata.normalize("NFKD", char) if c.isascii())
        if folded.isalpha():
            return folded, None
        return " ", "unsupported"
    if category in ("Cc", "Cf"):
        return "", "control"
    if category.startswith("P"):  # ¿ ¡ 「 and friends: no sound, no pause
        return " ", None
    return " ", "symbol"  # emoji, pictographs, math and other symbols


def clean_unicode(text: str) -> tuple[str, Counter]:
    """Fold ``text`` to ASCII (plus the few symbols the normaliser reads: £ € ¥ ¢ ° × ÷ ±).

    Returns the cleaned text and a Counter of dropped characters by kind: "symbol" (emoji
    and other symbols), "control" and "unsupported" (letters outside the Latin alphabet).
    """
    dropped: Counter = Counter()
    text = unicodedata.normalize("NFKC", text).translate(_PUNCTUATION_MAP)
    text = text.translate(_WHITESPACE_CONTROL)
    if not text.isascii():
        cache: dict[str, tuple[str, str | None]] = {}
        pieces = []
        for char in text:
            if char.isascii():
                pieces.append(char)
                continue
            if char not in cache:
                cache[char] = _fold_char(char)
            replacement, kind = cache[char]
            pieces.append(replacement)
            if kind:
                dropped[kind] += 1
        text = "".join(pieces)
    text, controls = _ASCII_CONTROL.subn("", text)
    if controls:
        dropped["control"] += controls
    return text, dropped


# -------------------------------------------------------------------------- tokenising

_TOKEN = re.compile(r"""
 (?P<inline>\{[^{}]*\})
|(?P<brace>[{}])
|(?P<url>(?:https?://|www\.)[^\s<>"{}]*[^\s<>"{}.,;:!?)\]'])
|(?P<time>\d{1,2}:\d{2}(?::\d{2})?(?!\d))
|(?P<mdy>\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})(?![\d/]))
|(?P<iso>\d{4}-\d{1,2}-\d{1,2}(?![\d-]))
|(?P<money>[$£€¥])
|(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d|,\d)|\d+(?:\.\d+)?)
|(?P<dotted>(?:[A-Za-z]\.){2,}|et\ al\.)
|(?P<word>[A-Za-z]+(?:'[A-Za-z]+)*)
|(?P<dash>--+|\s-\s)
|(?P<para>\n[ \t\r]*\n\s*)
|(?P<space>\s+)
|(?P<ellipsis>\.\.+)
|(?P<major>[.!?;]+)
|(?P<minor>[,:])
|(?P<paren>[()\[\]])
|(?P<symbol>[-/%&+=@\#°×÷±<>~*^\\|_¢])
|(?P<quote>['"])
|(?P<other>.)
""", re.VERBOSE | re.DOTALL)


class _Token(NamedTuple):
    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "brace":
            raise TextError(f"unmatched {match.group()!r} at character {match.start()}: "
                            "inline phonemes look like {HH AH0 L OW1}")
        if kind != "space":
            tokens.append(_Token(kind, match.group(), match.start(), match.end()))
    return tokens


def _shouted(tokens: list[_Token]) -> bytearray:
    """1 for tokens in sentences written mostly in capitals (those are not acronyms)."""
    flags = bytearray(len(tokens))
    start = upper = total = 0
    for i, token in enumerate([*tokens, _Token("para", "", 0, 0)]):
        if token.kind == "word" and len(token.text) > 1:
            total += 1
            upper += token.text.isupper()
        elif token.kind in ("major", "para"):
            if upper >= 3 and upper >= 0.6 * total:
                flags[start:i] = b"\x01" * (i - start)
            start, upper, total = i + 1, 0, 0
    return flags


# ------------------------------------------------------------------------ the reading


@dataclass
class _Builder:
    """Collects words into phrases, applying breaks and the length cap."""

    phrases: list[Phrase] = field(default_factory=list)
    words: list[str] = field(default_factory=list)

    def add(self, *words: str) -> None:
        for word in words:
            self.words.append(word)
            if len(self.words) > MAX_PHRASE_WORDS:
                self._split()

    def _split(self) -> None:
        """Cut an over-long phrase, before a conjunction in its last third if there is one."""
        cut = MAX_PHRASE_WORDS
        for j in range(MAX_PHRASE_WORDS, MAX_PHRASE_WORDS * 2 // 3, -1):
            if self.words[j] in _SPLIT_BEFORE:
                cut = j
                break
        self.phrases.append(Phrase(self.words[:cut], "minor"))
        self.words = self.words[cut:]

    def brk(self, kind: str, mark: str) -> None:
        if self.words:
            self.phrases.append(Phrase(self.words, kind, mark))
            self.words = []
        elif self.phrases:  # a break right after a break: keep the stronger one
            last = self.phrases[-1]
            if BREAKS.index(kind) > BREAKS.index(last.break_after):
                last.break_after, last.mark = kind, mark
            elif kind == last.break_after == "major" and mark and mark not in last.mark:
                last.mark += mark  # "Really?" followed by "!" reads as "?!"

    def finish(self) -> list[Phrase]:
        if self.words:
            self.phrases.append(Phrase(self.words, "end"))
            self.words = []
        if self.phrases:
            self.phrases[-1].break_after = "end"
        return self.phrases


def _default_pronounceable(word: str) -> bool:
    """Without a dictionary: longer all-capital words with a vowel read as words."""
    return len(word) >= 4 and any(c in "aeiouy" for c in word)


class _Reader:
    """One pass over the tokens of one text; each ``_read_*`` returns the next index."""

    def __init__(self, tokens: list[_Token], pronounceable: Callable[[str], bool]):
        self.tokens = tokens
        self.shouted = _shouted(tokens)
        self.pronounceable = pronounceable
        self.out = _Builder()
        self.readers = {kind: getattr(self, f"_read_{kind}") for kind in _TOKEN.groupindex
                        if kind not in ("brace", "space")}

    # token helpers -------------------------------------------------------------
    def kind(self, i: int) -> str:
        return self.tokens[i].kind if 0 <= i < len(self.tokens) else ""

    def text(self, i: int) -> str:
        return self.tokens[i].text if 0 <= i < len(self.tokens) else ""

    def touching(self, i: int) -> bool:
        """True when token i starts right where token i-1 ends (no space between)."""
        return 0 < i < len(self.tokens) and self.tokens[i - 1].end == self.tokens[i].start

    def is_name(self, i: int) -> bool:
        """A capitalised word (a name, a street, a sentence start)."""
        text = self.text(i)
        return self.kind(i) == "word" and text[:1].isupper() and not text.isupper()

    def sentence_start(self, i: int) -> bool:
        j = i - 1
        while self.kind(j) == "quote" or self.kind(j) == "paren":
            j -= 1
        return j < 0 or self.kind(j) in ("major", "para")

    # the loop ------------------------------------------------------------------
    def read(self) -> list[Phrase]:
        i = 0
        while i < len(self.tokens):
            i = self.readers[self.tokens[i].kind](i)
        return self.out.finish()

    def _read_inline(self, i: int) -> int:
        self.out.add("{" + " ".join(self.text(i)[1:-1].split()) + "}")
        return i + 1

    def _read_para(self, i: int) -> int:
        self.out.brk("major", "")
        return i + 1

    def _read_major(self, i: int) -> int:
        text = self.text(i)
        if (text == "." and self.touching(i) and self.touching(i + 1)
                and self.kind(i - 1) in ("word", "number") and self.kind(i + 1) in
                ("word", "number")):
            self.out.add("dot")  # example.com, version 2.0.1
            return i + 1
        if "?" in text:
            mark = "?!" if "!" in text else "?"
        else:
            mark = "!" if "!" in text else "." if "." in text else ";"
        self.out.brk("major", mark)
        return i + 1

    def _read_ellipsis(self, i: int) -> int:
        self.out.brk("minor", "...")
        return i + 1

    def _read_minor(self, i: int) -> int:
        self.out.brk("minor", self.text(i))
        return i + 1

    def _read_dash(self, i: int) -> int:
        self.out.brk("minor", "--")
        return i + 1

    def _read_paren(self, i: int) -> int:
        self.out.brk("minor", "(" if self.text(i) in "([" else ")")
        return i + 1

    def _read_quote(self, i: int) -> int:
        return i + 1

    def _read_other(self, i: int) -> int:
        return i + 1

    def _read_url(self, i: int) -> int:
        text = re.sub(r"^https?://", "", self.text(i))
        for piece in re.findall(r"[A-Za-z]+|\d+|[./@-]", text):
            if piece in "./@-":
                self.out.add({".": "dot", "/": "slash", "@": "at", "-": "dash"}[piece])
            elif piece.isdigit():
                self.out.add(*(cardinal(int(piece)) if len(piece) < 5 else digits(piece)))
            else:
                self._add_word(piece)
        return i + 1

    # words -----------------------------------------------------------------------
    def _add_word(self, word: str) -> None:
        lower = word.lower()
        if lower in _SPELLED_WORDS:
            self.out.add(*_SPELLED_WORDS[lower])
        else:
            self.out.add(lower)

    def _read_word(self, i: int) -> int:
        text = self.text(i)
        lower = text.lower()
        period = self.text(i + 1) == "." and self.touching(i + 1)
        after = i + 2 if period else i + 1
        # Titles before a name: Dr. Smith, Mr Jones; St./Dr. after a name are places.
        if lower in _TITLES and not text.isupper():
            if (lower in _STREETS and period and self.is_name(i - 1)
                    and not self.sentence_start(i - 1)):
                self.out.add(_STREETS[lower])
                return self._after_abbreviation(after, period)
            if period or self.is_name(i + 1):
                self.out.add(*_TITLES[lower].split())
                return after
        if lower in _ABBREVIATIONS and not text.isupper() and (
                period or lower in _ABBREVIATIONS_WITHOUT_PERIOD):
            self.out.add(*_ABBREVIATIONS[lower].split())
            return after if lower in _MID_SENTENCE else self._after_abbreviation(after, period)
        if lower == "no" and period and self.kind(i + 2) == "number":
            self.out.add("number")
            return after
        if lower in _MONTH_BY_NAME and (text[0].isupper() or period) and (
                self.kind(after) == "number" or (period and lower != _MONTH_BY_NAME[lower])):
            return self._read_month(i, after)
        if (len(text) > 1 and text.isupper() and "'" not in text) or (
                len(text) > 2 and text.endswith("s") and text[:-1].isupper()
                and text[:-1].isalpha()):
            return self._read_capitals(i)
        if len(text) == 1 and text.isupper() and self._beside_ampersand(i):
            self.out.add(text)  # the last T of AT&T
            return i + 1
        self._add_word(text)
        return i + 1

    def _after_abbreviation(self, i: int, period: bool) -> int:
        """An abbreviation's period also ends the sentence when the text ends there or a
        word that usually opens one follows (etc. The ...); U.S. Army reads on."""
        if period and (i >= len(self.tokens) or self.kind(i) == "para" or (
                self.is_name(i) and self.text(i) in _SENTENCE_OPENERS) or self.text(i) == "I"):
            self.out.brk("major", ".")
        return i

    def _beside_ampersand(self, i: int) -> bool:
        return (self.text(i + 1) == "&" and self.touching(i + 1)) or (
            self.text(i - 1) == "&" and self.touching(i))

    def _read_capitals(self, i: int) -> int:
        """NASA (a word), FBI (initials), Henry VIII, World War II, CDs."""
        text = self.text(i)
        previous = self.text(i - 1).lower()
        if self.shouted[i]:
            self._add_word(text)
            return i + 1
        if set(text) <= set("IVXLC") and _ROMAN.fullmatch(text):
            if previous in _COUNTING_WORDS:
                self.out.add(*cardinal(_roman_value(text)))
                return i + 1
            if set(text) <= set("IVX") and self.is_name(i - 1):
                self.out.add("the", *ordinal(_roman_value(text)))
                return i + 1
        if self._beside_ampersand(i):
            self.out.add(*(c for c in text if c.isalpha()))  # AT&T
            return i + 1
        stem, suffix = text, ""
        if text.endswith("s") and text[:-1].isupper():
            stem, suffix = text[:-1], "s"
        if suffix == "" and (text in _CAPITAL_WORDS or (
                len(text) > 2 and self.pronounceable(text.lower()))):
            self._add_word(text)
            return i + 1
        letters = list(stem)
        letters[-1] += suffix  # CDs -> C Ds: the lexicon reads "Ds" as the letter's plural
        self.out.add(*letters)
        return i + 1

    def _read_dotted(self, i: int) -> int:
        text = self.text(i)
        lower = text.lower()
        if lower in _DOTTED:
            self.out.add(*_DOTTED[lower])
        else:
            self.out.add(*(c.upper() for c in text if c.isalpha()))
        if lower in ("e.g.", "i.e."):
            return i + 1
        return self._after_abbreviation(i + 1, True)

    def _read_month(self, i: int, after: int) -> int:
        """Jan. 5 / January 5th, 2024 / Dec. 2024."""
        self.out.add(_MONTH_BY_NAME[self.text(i).lower()])
        if self.kind(after) != "number":
            return self._after_abbreviation(after, after == i + 2)
        value = self.text(after)
        if value.isdigit() and 1 <= int(value) <= 31:
            self.out.add(*ordinal(int(value)))
            nxt = after + 1
            if self.text(nxt).lower() in ("st", "nd", "rd", "th") and self.touching(nxt):
                nxt += 1
            if (self.text(nxt) == "," and self.kind(nxt + 1) == "number"
                    and len(self.text(nxt + 1)) == 4 and self.text(nxt + 1).isdigit()):
                self.out.add(*year(int(self.text(nxt + 1))))
                return nxt + 2
            return nxt
        if value.isdigit() and len(value) == 4:
            self.out.add(*year(int(value)))
            return after + 1
        return after

    # numbers ---------------------------------------------------------------------
    def _suffix(self, i: int) -> str:
        """A word glued to the number before it (1st, 1980s, 5kg), lower-cased, or ""."""
        return self.text(i).lower() if self.kind(i) == "word" and self.touching(i) else ""

    def _read_number(self, i: int) -> int:
        text = self.text(i)
        plain = text.replace(",", "")
        if len(plain) > _LONGEST_NUMBER:  # a serial number or a wall of digits
            self.out.add(*digits(plain))
            return i + 1
        integer = plain.isdigit()
        value = float(plain)
        suffix = self._suffix(i + 1)
        nxt = self.text(i + 1)
        if integer and suffix in ("st", "nd", "rd", "th"):
            self.out.add(*ordinal(int(plain)))
            return i + 2
        if (integer and suffix == "s") or (suffix == "s" and self.text(i - 1) == "'"):
            words = self._integer_words(plain, as_year=len(plain) == 4)
            self.out.add(*words[:-1], plural(words[-1]))
            return i + 2
        if nxt == "/" and self.touching(i + 1) and self.kind(i + 2) == "number" and (
                self.touching(i + 2) and integer and self.text(i + 2).isdigit()
                and len(self.text(i + 2)) <= _LONGEST_NUMBER):
            return self._read_fraction(i)
        if nxt == "%":
            self.out.add(*decimal(text), "percent")
            return i + 2
        if nxt == "¢":
            self.out.add(*decimal(text), "cent" if value == 1 else "cents")
            return i + 2
        if nxt == "°":
            self.out.add(*decimal(text), "degree" if value == 1 else "degrees")
            scale = self.text(i + 2)
            if scale in ("C", "F") and self.touching(i + 2):
                self.out.add("celsius" if scale == "C" else "fahrenheit")
                return i + 3
            return i + 2
        unit = self._unit(i + 1)
        if unit:
            name, after = unit
            self.out.add(*decimal(text), *_UNITS[name][value != 1].split())
            return after
        if (self.text(i + 1).lower() in ("am", "pm") or self.text(i + 1).lower() in (
                "a.m.", "p.m.")) and integer and 0 < int(plain) <= 12:
            self.out.add(*cardinal(int(plain)))
            return self._read_meridiem(i + 1)
        if integer and 1 <= int(plain) <= 31 and self.kind(i + 1) == "word" and (
                self.text(i + 1) in (m.capitalize() for m in _MONTHS)):
            self.out.add("the", *ordinal(int(plain)), "of", self.text(i + 1).lower())
            return i + 2
        if (nxt == "-" and self.touching(i + 1) and self.kind(i + 2) == "number"
                and self.touching(i + 2)):
            self.out.add(*self._number_words(text), "to")  # 5-10, 1990-1995
            return i + 2
        self.out.add(*self._number_words(text))
        return i + 1

    def _integer_words(self, plain: str, as_year: bool) -> list[str]:
        if as_year and len(plain) == 4 and not plain.startswith("0"):
            return year(int(plain))
        return decimal(plain)

    def _number_words(self, text: str) -> list[str]:
        plain = text.replace(",", "")
        # A bare four-digit number from 1100 to 2099 is most often a year.
        if plain.isdigit() and "," not in text and 1100 <= int(plain) <= 2099:
            return year(int(plain))
        return decimal(text)

    def _unit(self, i: int) -> tuple[str, int] | None:
        """The unit at token i (``kg``, ``km/h``) and the index after it, or None."""
        if self.kind(i) != "word":
            return None
        name = self.text(i).lower()
        if self.text(i + 1) == "/" and self.text(i + 2).lower() == "h" and self.touching(
                i + 1) and self.touching(i + 2):
            name, after = name + "/h", i + 3
        else:
            after = i + 1
        if name not in _UNITS:
            return None
        # Single letters and "mi" are units only when they touch the number (5m, 3mi).
        if (len(name) == 1 or name == "mi") and not self.touching(i):
            return None
        if self.text(i) == "M":  # 5M is more often a million than five metres
            return None
        return name, after

    def _read_fraction(self, i: int) -> int:
        numerator = int(self.text(i).replace(",", ""))
        denominator = int(self.text(i + 2))
        if 0 < numerator < denominator <= 100:
            self.out.add(*fraction(numerator, denominator))
        else:  # 24/7, 9/11
            self.out.add(*cardinal(numerator), *cardinal(denominator))
        return i + 3

    def _read_meridiem(self, i: int) -> int:
        self.out.add(*(c.upper() for c in self.text(i) if c.isalpha()))
        if self.kind(i) == "dotted":
            return self._after_abbreviation(i + 1, True)
        return i + 1

    def _read_time(self, i: int) -> int:
        parts = [int(p) for p in self.text(i).split(":")]
        hours, minutes = parts[0], parts[1]
        seconds = parts[2] if len(parts) > 2 else 0
        meridiem = self.text(i + 1).lower() in ("am", "pm", "a.m.", "p.m.")
        if hours > 23 or minutes > 59 or seconds > 59:
            for part in parts:  # a score or a ratio
                self.out.add(*cardinal(part))
            return i + 1
        words = cardinal(hours)
        if minutes == 0:
            if not meridiem:
                words += ["o'clock"] if 1 <= hours <= 12 else ["hundred"]
        elif minutes < 10:
            words += ["oh", _ONES[minutes]]
        else:
            words += cardinal(minutes)
        if seconds:
            words += ["and", *cardinal(seconds), "second" if seconds == 1 else "seconds"]
        self.out.add(*words)
        return self._read_meridiem(i + 1) if meridiem else i + 1

    def _read_mdy(self, i: int) -> int:
        first, second, third = self.text(i).split("/")
        month, day = int(first), int(second)
        if month > 12 >= day:  # 25/12/2024: day first
            month, day = day, month
        if not (1 <= month <= 12 and 1 <= day <= 31):
            for part in (first, second, third):
                self.out.add(*cardinal(int(part)))
            return i + 1
        self.out.add(_MONTHS[month - 1], *ordinal(day), *self._year_of(third))
        return i + 1

    def _read_iso(self, i: int) -> int:
        first, second, third = self.text(i).split("-")
        month, day = int(second), int(third)
        if not (1 <= month <= 12 and 1 <= day <= 31):
            for part in (first, second, third):
                self.out.add(*cardinal(int(part)))
            return i + 1
        self.out.add(_MONTHS[month - 1], *ordinal(day), *year(int(first)))
        return i + 1

    @staticmethod
    def _year_of(text: str) -> list[str]:
        if len(text) == 2:  # '99 -> ninety nine, '05 -> oh five
            return ["oh", _ONES[int(text)]] if text.startswith("0") else cardinal(int(text))
        return year(int(text))

    def _read_money(self, i: int) -> int:
        unit, units, sub, subs = _CURRENCIES[self.text(i)]
        if self.kind(i + 1) != "number":
            self.out.add(units)
            return i + 1
        amount = self.text(i + 1).replace(",", "")
        after = i + 2
        scale = self.text(after).lower() if self.kind(after) == "word" else ""
        if scale in _MONEY_SCALES and (self.touching(after) or len(scale) > 2):
            self.out.add(*decimal(amount), _MONEY_SCALES[scale], units)
            return after + 1
        whole, _, cents_text = amount.partition(".")
        if len(cents_text) > 2 or (cents_text and not sub) or len(whole) > _LONGEST_NUMBER:
            self.out.add(*decimal(amount), units)
            return after
        number = int(whole or "0")
        cents = int(cents_text.ljust(2, "0")) if cents_text else 0
        words: list[str] = []
        if number or not cents:
            words += [*cardinal(number), unit if number == 1 else units]
        if cents:
            words += [*cardinal(cents), sub if cents == 1 else subs]
        self.out.add(*words)
        return after

    # symbols ---------------------------------------------------------------------
    def _read_symbol(self, i: int) -> int:
        symbol = self.text(i)
        nxt_kind = self.kind(i + 1)
        glued_next = self.touching(i + 1)
        if symbol == "-":
            if glued_next and nxt_kind in ("number", "money") and not (
                    self.touching(i) and self.kind(i - 1) in ("word", "number")):
                self.out.add("minus")
            return i + 1  # a hyphen between words (well-known) just separates them
        if symbol == "#" and nxt_kind == "number":
            self.out.add("number")
            return i + 1
        if symbol == "~":
            if nxt_kind in ("number", "money"):
                self.out.add("about")
            return i + 1
        if symbol == "+" and glued_next and nxt_kind == "number" and not self.touching(i):
            self.out.add("plus")
            return i + 1
        if symbol in _SYMBOLS:
            self.out.add(*_SYMBOLS[symbol])
        return i + 1  # / * ^ \ | _ and the like: no sound


def normalize(text: str, pronounceable: Callable[[str], bool] | None = None) -> list[Phrase]:
    """Turn English ``text`` into phrases of spoken words (see the module docstring).

    ``pronounceable(word)`` says whether a lower-cased all-capital word (NASA) is read as
    a word; without it, capitals of four letters or more with a vowel are. Empty or
    whitespace-only text gives ``[]``. TextError for an unclosed inline ``{...}``.
    """
    cleaned, dropped = clean_unicode(text)
    if dropped:
        log.warning("dropped %s", ", ".join(
            f"{count} {_DROPPED_NAMES[kind]}" for kind, count in sorted(dropped.items())))
    if not cleaned.strip():
        return []
    reader = _Reader(_tokens(cleaned), pronounceable or _default_pronounceable)
    return reader.read()


_DROPPED_NAMES = {"control": "control character(s)", "symbol": "emoji/symbol(s)",
                  "unsupported": "letter(s) outside the Latin alphabet"}
