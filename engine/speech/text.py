"""English text normalisation: raw text -> phrases of spoken words.

    normalize("Dr. Smith paid $3.50 on Jan. 5, 2024! Call 212-555-0199.")
    # [Phrase(["doctor", "smith", "paid", "three", "dollars", "fifty", "cents", "on",
    #          "january", "fifth", "twenty", "twenty", "four"], "major", "!"),
    #  Phrase(["call", "two", "one", "two"], "minor", ","),
    #  Phrase(["five", "five", "five"], "minor", ","),
    #  Phrase(["zero", "one", "nine", "nine"], "end", ".")]

What comes out: lower-case words as the dictionary spells them, single upper-case letters
(``"F"``) for letters that are spelled out (acronyms, ``a.m.``), and inline phonemes
(``"{HH AH0 L OW1}"``, or ``[HH AH0 L OW1]`` in the text) passed through untouched for the
lexicon. Written out as a reader says them:

- numbers, ordinals, years and decades, fractions and mixed numbers (two and a half);
- money (cents only, per unit: $20/mo, ranges, other currencies and scales: ¥30b);
- times (24-hour, with seconds, any spelling of a.m./p.m., time zones, 2pm-5pm), ratios;
- dates in any case and order (july 25 2012, 25 July, 2016/07/03, 15.01.2020, 2Q22);
- measures with plural, per, square and cubic units (12kg/kg, km³), feet and inches;
- telephone numbers digit by digit in their groups, IP addresses, codes and serials;
- street addresses (house numbers in pairs, N/S/E/W, St./Ave./Expy, states, ZIP codes);
- web and e-mail addresses (HTTPS colon slash slash ... dot com), math (1-2=5), symbols,
  abbreviations and acronyms. Markup tags (``<noise/>``) are not read.

Punctuation becomes phrase breaks: ``major`` (. ! ? ;), ``minor`` (, : dashes,
parentheses, between the groups of a telephone number) and ``end`` after the last phrase;
a phrase longer than ``MAX_PHRASE_WORDS`` is split, before a conjunction where one is near.

Unicode is NFKC-normalised, curly quotes and dashes become ASCII, accented letters are
folded (é -> e, ß -> ss); emoji, other symbols, control characters and letters outside
the Latin alphabet are dropped and counted (one warning per call). The work is linear in
the length of the text: one regex scan (every pattern bounded) and one pass over its
tokens, looking a few tokens around each.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from kantor.engine.speech.phones import ARPABET

log = logging.getLogger(__name__)

MAX_PHRASE_WORDS = 30
# Longest run-together name split into two words (longer ones are not tried: the split
# costs one dictionary look-up per letter).
MAX_COMPOUND = 30
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
_SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion",
           "sextillion")
# Digits past this many are read one by one (and never parsed: int() refuses huge strings).
_LONGEST_NUMBER = 3 * len(_SCALES)
# ...and past this many when written without thousands separators: 5551234567 or an
# account number is read digit by digit; 1,234,567,890 is a quantity.
_LONGEST_PLAIN_NUMBER = 9
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
    """``"3.14"`` -> three point one four; ``".5"`` -> point five; ``"1,234"`` -> one
    thousand two hundred ...; integers with a leading zero (``"007"``) and integers longer
    than ``_LONGEST_PLAIN_NUMBER`` digits without separators are read digit by digit."""
    longest = _LONGEST_NUMBER if "," in text else _LONGEST_PLAIN_NUMBER
    whole, _, fraction = text.replace(",", "").partition(".")
    if not whole and fraction:
        words = []
    elif (len(whole) > 1 and whole.startswith("0")) or len(whole) > longest:
        words = digits(whole)
    else:
        words = cardinal(int(whole or "0"))
    if fraction:
        words += ["point", *digits(fraction)]
    return words


def pairs(n: int) -> list[str]:
    """A number read in pairs of digits, as house numbers and years are: ``2788`` ->
    twenty seven eighty eight, ``708`` -> seven oh eight, ``1900`` -> nineteen hundred,
    ``2005`` -> twenty oh five; under 100 and round thousands as cardinals."""
    if n < 100 or n % 1000 == 0 or n > 9999:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return [*cardinal(high), "hundred"]
    if low < 10:
        return [*cardinal(high), "oh", _ONES[low]]
    return [*cardinal(high), *cardinal(low)]


def address_number(text: str) -> list[str]:
    """Digits in a web or e-mail address (``asdf123``, ``/12-sm``): one by one, except a
    single digit (``test2``) and round thousands (``rtx-6000``), which are numbers."""
    if len(text) == 1 or (not text.startswith("0") and len(text) <= 6
                          and text.endswith("000")):
        return cardinal(int(text))
    return digits(text)


def code_number(text: str) -> list[str]:
    """Digits inside a code, an address or a serial (``ab9453``, ``t2000``, ``C24``,
    ``/123-``): up to three digits (``"24"``) and round thousands (``"6000"``) as numbers,
    anything else (``"9453"``, a leading zero) digit by digit."""
    if text.startswith("0") and len(text) > 1:
        return digits(text)
    if len(text) <= 3 or (len(text) <= 6 and text.endswith("000")):
        return cardinal(int(text))
    return digits(text)


def plural(word: str) -> str:
    """``"eighty"`` -> eighties, ``"six"`` -> sixes, ``"hundred"`` -> hundreds."""
    if word.endswith("y"):
        return word[:-1] + "ies"
    if word.endswith(("x", "s")):
        return word + "es"
    return word + "s"


def fraction(numerator: int, denominator: int) -> list[str]:
    """``3, 4`` -> three quarters; ``1, 2`` -> one half; ``5, 8`` -> five eighths;
    ``22, 3`` -> twenty two thirds; ``5, 1`` -> five over one."""
    one = numerator == 1
    if denominator <= 1:
        return [*cardinal(numerator), "over", *cardinal(denominator)]
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
    "bps": ("bit per second", "bits per second"),
    "kbps": ("kilobit per second", "kilobits per second"),
    "mbps": ("megabit per second", "megabits per second"),
    "gbps": ("gigabit per second", "gigabits per second"),
    "kw": ("kilowatt", "kilowatts"), "kwh": ("kilowatt hour", "kilowatt hours"),
    "mw": ("megawatt", "megawatts"),
}
# Length units that take a power: 5 m2 / 5 m² is five square meters, km³ cubic.
_SQUARED_UNITS = frozenset(_words("km m cm mm ft mi"))
# After a slash, "per" and the unit: $20/mo, 12kg/kg, 3 cc/s.
_PER_UNITS = {"mo": "month", "month": "month", "yr": "year", "year": "year", "wk": "week",
              "week": "week", "d": "day", "day": "day", "hr": "hour", "h": "hour",
              "hour": "hour", "min": "minute", "s": "second", "sec": "second",
              "night": "night", "person": "person", "head": "head", "unit": "unit",
              "item": "item", "piece": "piece"}

# Money: symbol -> (unit, units, sub-unit, sub-units).
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents"),
               "¥": ("yen", "yen", "", ""),
               "₩": ("won", "won", "", ""),
               "₹": ("rupee", "rupees", "paisa", "paise")}
# Dollars of a named country (US$5, C$5) are read "five U S dollars".
_DOLLAR_PREFIXES = {"US": ("U", "S"), "C": ("canadian",), "A": ("australian",),
                    "AU": ("australian",), "NZ": ("N", "Z"), "HK": ("hong", "kong"),
                    "S": ("singapore",)}
_MONEY_SCALES = {"thousand": "thousand", "million": "million", "billion": "billion",
                 "trillion": "trillion", "k": "thousand", "m": "million", "mn": "million",
                 "bn": "billion", "b": "billion"}
# Scale words a count or a measure can carry: 100 million kg.
_COUNT_SCALES = frozenset(_words("thousand million billion trillion"))

# Addresses: a house number, maybe a direction, a street name and one of these.
_STREET_SUFFIXES = {
    "st": "street", "street": "street", "ave": "avenue", "av": "avenue", "avenue": "avenue",
    "rd": "road", "road": "road", "blvd": "boulevard", "boulevard": "boulevard",
    "dr": "drive", "drive": "drive", "ln": "lane", "lane": "lane", "ct": "court",
    "court": "court", "pl": "place", "place": "place", "pkwy": "parkway",
    "parkway": "parkway", "hwy": "highway", "highway": "highway", "expy": "expressway",
    "expressway": "expressway", "fwy": "freeway", "freeway": "freeway", "ter": "terrace",
    "terrace": "terrace", "cir": "circle", "circle": "circle", "sq": "square",
    "square": "square", "way": "way", "plaza": "plaza", "trl": "trail", "trail": "trail",
    "aly": "alley", "alley": "alley", "hts": "heights", "pike": "pike"}
_DIRECTIONS = {"N": "north", "S": "south", "E": "east", "W": "west", "NE": "northeast",
               "NW": "northwest", "SE": "southeast", "SW": "southwest"}
_STATES = {
    "AL": "alabama", "AK": "alaska", "AZ": "arizona", "AR": "arkansas", "CA": "california",
    "CO": "colorado", "CT": "connecticut", "DE": "delaware", "FL": "florida",
    "GA": "georgia", "HI": "hawaii", "ID": "idaho", "IL": "illinois", "IN": "indiana",
    "IA": "iowa", "KS": "kansas", "KY": "kentucky", "LA": "louisiana", "ME": "maine",
    "MD": "maryland", "MA": "massachusetts", "MI": "michigan", "MN": "minnesota",
    "MS": "mississippi", "MO": "missouri", "MT": "montana", "NE": "nebraska",
    "NV": "nevada", "NH": "new hampshire", "NJ": "new jersey", "NM": "new mexico",
    "NY": "new york", "NC": "north carolina", "ND": "north dakota", "OH": "ohio",
    "OK": "oklahoma", "OR": "oregon", "PA": "pennsylvania", "RI": "rhode island",
    "SC": "south carolina", "SD": "south dakota", "TN": "tennessee", "TX": "texas",
    "UT": "utah", "VT": "vermont", "VA": "virginia", "WA": "washington",
    "WV": "west virginia", "WI": "wisconsin", "WY": "wyoming", "DC": "D C"}
_ZIP = re.compile(r"\d{5}")

# Times: what follows a clock time.
_MERIDIEMS = frozenset(("am", "pm"))
_TIME_ZONES = frozenset(_words("est edt cst cdt mst mdt pst pdt akst hst gmt utc bst cet "
                               "cest eet ist jst aest"))
_ERAS = frozenset(_words("ad bc ce bce"))
# Tokens a minus cannot follow as a hyphen does (word-1, 6:6-8, 5-10): a "-" glued to
# anything else before a number is a minus sign.
_NOT_OPERANDS = frozenset(("", "space", "para", "major", "minor", "dash", "paren", "quote",
                           "symbol", "ellipsis", "other"))
# Service numbers said digit by digit.
_SAID_AS_DIGITS = frozenset(("911",))
# Read as their pair of numbers, not as fractions.
_FRACTION_IDIOMS = frozenset(((24, 7), (9, 11), (50, 50), (20, 20), (4, 20)))
# Retirement plans named by their tax-code section: 401(k) -> four oh one K.
_PLAN_SECTIONS = frozenset(("401", "403", "457"))

_SYMBOLS = {"&": ["and"], "+": ["plus"], "=": ["equals"], "@": ["at"], "%": ["percent"],
            "×": ["times"], "÷": ["divided", "by"], "±": ["plus", "or", "minus"],
            "<": ["less", "than"], ">": ["greater", "than"], "°": ["degrees"],
            "#": ["hash"], "¢": ["cents"], "§": ["section"], "¶": ["paragraph"]}
# How the parts of a web or e-mail address are read.
_ADDRESS_SYMBOLS = {".": "dot", "/": "slash", "@": "at", "-": "dash", "_": "underscore",
                    "&": "ampersand", ":": "colon", "?": "question mark", "=": "equals",
                    "#": "hash", "~": "tilde", "%": "percent", "+": "plus"}
# File types said as letters (or as their own word) at the end of an address.
_FILE_TYPES = {"html": "HTML", "htm": "HTM", "pdf": "PDF", "xml": "XML", "css": "CSS",
               "php": "PHP", "png": "PNG", "svg": "SVG", "csv": "CSV", "txt": "text",
               "jpg": "jpeg", "js": "JS", "asp": "ASP", "mp3": "MP3", "mp4": "MP4"}

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
# Capitalised words before "I" that make it the pronoun, not a regnal number.
_NOT_NAMES = frozenset(_words("Not Am Was Were Did Do Does Said Could Would Should Can Will "
                              "Shall May Might Must Have Had Has Than Neither Nor Me"))
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
_KEPT_SYMBOLS = frozenset("£€¥₩₹¢°×÷±§¶")
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
    """Fold ``text`` to ASCII (plus the few symbols the normaliser reads: £ € ¥ ₩ ₹ ¢ ° × ÷ ±
    § ¶).

    Returns the cleaned text and a Counter of dropped characters by kind: "symbol" (emoji
    and other symbols), "control" and "unsupported" (letters outside the Latin alphabet).
    """
    dropped: Counter = Counter()
    if "º" in text:  # the ordinal indicator stands for a degree after a number (45º)
        text = re.sub(r"(?<=\d)º", "°", text)
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

_PHONE_NAMES = "|".join(sorted(ARPABET, key=len, reverse=True))
# The end of a web address: not the punctuation of the sentence around it.
_ADDRESS_END = r"""[^\s<>"{}.,;:!?)\]']"""
_TLDS = ("com|org|net|edu|gov|mil|int|info|biz|io|ai|co|us|uk|de|fr|it|es|nl|be|ch|at|se|"
         "no|dk|fi|pl|pt|ie|eu|ca|au|nz|jp|cn|kr|in|ru|br|mx|za|sm|tv|me|app|dev")
_TOKEN = re.compile(rf"""
 (?P<inline>\{{[^{{}}]*\}})
|(?P<brace>[{{}}])
|(?P<markup><[A-Za-z/!?][^<>\n]{{0,200}}>)
|(?P<arpabet>\[(?=[^\]\n]{{0,200}}\d)(?:\s*(?:{_PHONE_NAMES})[012]?)+\s*\])
|(?P<url>(?:https?://|ftp://|file:///?|www\.)[^\s<>"{{}}]*{_ADDRESS_END})
|(?P<email>(?<![\w.%+&-])[A-Za-z0-9][A-Za-z0-9._%+&-]{{0,63}}@[A-Za-z0-9-]{{1,63}}
           (?:\.[A-Za-z0-9-]{{1,63}}){{1,8}}(?:/(?:[^\s<>"{{}}]*{_ADDRESS_END})?)?)
|(?P<phone>(?:\+\d{{1,3}}[\s-]?)?(?:\(\d{{3}}\)[\s-]?|\d{{3}}[-.])\d{{3}}[-.]\d{{4}}
           (?:-\d{{1,4}})?(?![\d-])
          |(?<![\d-])[2-9]\d{{2}}-\d{{2}}(?!00)\d{{2}}(?![\d-])
          |\d{{3}}-\d{{2}}-\d{{4}}(?![\d-])
          |1-8(?:00|88|77|66|55|44|33)-[A-Z0-9]+(?:-[A-Z0-9]+)*(?![\w-]))
|(?P<ip>\d{{1,3}}(?:\.\d{{1,3}}){{3}}(?![\d.]))
|(?P<domain>(?<![\w.@/-])[A-Za-z0-9][A-Za-z0-9-]{{0,62}}(?:\.[A-Za-z0-9-]{{1,63}}){{0,8}}
            \.(?:{_TLDS})
            (?![\w-]|\.\w)(?:/(?:[^\s<>"{{}}]*{_ADDRESS_END})?)?)
|(?P<time>\d{{1,2}}:\d{{2}}(?::\d{{2}})?(?![\d:]))
|(?P<ratio>\d+:\d+(?![\d:]|-\d))
|(?P<mdy>\d{{1,2}}/\d{{1,2}}/(?:\d{{4}}|\d{{2}})(?![\d/]))
|(?P<ymd>\d{{4}}[-/]\d{{1,2}}[-/]\d{{1,2}}(?![\d/-]))
|(?P<dmy>(?:\d{{1,2}}\.\d{{1,2}}\.|\d{{1,2}}-\d{{1,2}}-)\d{{4}}(?![\d.-]))
|(?P<money>(?:US|AU|NZ|HK|[CAS])?\$|[£€¥₩₹])
|(?P<number>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?(?!\d|,\d)|\d+(?:\.\d+)?|(?<![\w.])\.\d+)
|(?P<dotted>(?:[A-Za-z]\.)+[A-Za-z]\.?(?![\w.])|(?:[A-Za-z]\.){{2,}}|et\ al\.)
|(?P<word>[A-Za-z]+(?:'[A-Za-z]+)*)
|(?P<dash>--+|\s-\s)
|(?P<para>\n[ \t\r]*\n\s*)
|(?P<space>\s+)
|(?P<ellipsis>\.\.+)
|(?P<major>[.!?;]+)
|(?P<minor>[,:])
|(?P<paren>[()\[\]])
|(?P<symbol>[-/%&+=@\#°×÷±<>~*^\\|_¢§¶])
|(?P<quote>['"])
|(?P<other>.)
""", re.VERBOSE | re.DOTALL)
# How far past a token the reader looks (padding of its token lists).
_LOOK_AHEAD = 16
# Kinds whose reader is not a method of the same name.
_SILENT_KINDS = ("brace", "space")


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

    def last(self) -> str:
        """The last word added to the phrase being built, or ""."""
        return self.words[-1] if self.words else ""

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


def _month(text: str) -> str:
    """The month a word names (``"Sept"`` -> september), or ""."""
    return _MONTH_BY_NAME.get(text.lower(), "")


class _Reader:
    """One pass over the tokens of one text; each ``_read_*`` returns the next index.

    Every look-ahead and look-behind is a few tokens at most, so the pass stays linear.
    """

    def __init__(self, tokens: list[_Token], pronounceable: Callable[[str], bool]):
        self.tokens = tokens
        # Plain lists, padded past the end, for the helpers below: they are called a
        # dozen times per token, so they index lists rather than tuples of tokens.
        padding = [""] * _LOOK_AHEAD
        self._kinds = [t.kind for t in tokens] + padding
        self._texts = [t.text for t in tokens] + padding
        self._glued = bytearray(len(tokens) + _LOOK_AHEAD)
        for k in range(1, len(tokens)):
            self._glued[k] = tokens[k - 1].end == tokens[k].start
        self.shouted = _shouted(tokens)
        self.pronounceable = pronounceable
        self.out = _Builder()
        self.readers = {kind: getattr(self, f"_read_{kind}") for kind in _TOKEN.groupindex
                        if kind not in _SILENT_KINDS}
        # the index of the last token of a street address being read (-1: none), and
        # whether the current sentence had one (then "City, NY" names a state)
        self.street_end = -1
        self.address = False
        self.quotes = 0  # double quotes opened and not yet closed

    # token helpers -------------------------------------------------------------
    def kind(self, i: int) -> str:
        return self._kinds[i] if 0 <= i < len(self._kinds) else ""

    def text(self, i: int) -> str:
        return self._texts[i] if 0 <= i < len(self._texts) else ""

    def touching(self, i: int) -> bool:
        """True when token i starts right where token i-1 ends (no space between)."""
        return 0 < i < len(self._glued) and self._glued[i] == 1

    def is_name(self, i: int) -> bool:
        """A capitalised word (a name, a street, a sentence start)."""
        text = self.text(i)
        return self.kind(i) == "word" and text[:1].isupper() and not text.isupper()

    def sentence_start(self, i: int) -> bool:
        j = i - 1
        while self.kind(j) == "quote" or self.kind(j) == "paren":
            j -= 1
        return j < 0 or self.kind(j) in ("major", "para")

    def is_integer(self, i: int) -> bool:
        return self.kind(i) == "number" and self.text(i).isdigit()

    def glued(self, i: int, text: str) -> bool:
        """Token i is ``text`` (any case) and touches the token before it."""
        return self.text(i).lower() == text and self.touching(i)

    def meridiem(self, i: int) -> int:
        """The index after an "am"/"pm" (any case, dotted or not) at token i, or 0."""
        if self.kind(i) in ("word", "dotted") and self.text(i).replace(
                ".", "").lower() in _MERIDIEMS:
            return i + 1
        if (self.text(i).lower() in ("a", "p") and self.text(i + 1) == "."
                and self.touching(i + 1) and self.glued(i + 2, "m")):  # "a.m" cut short
            return i + 3
        return 0

    def unit_after(self, i: int) -> bool:
        """A unit of measure starts at token i."""
        return self._unit(i) is not None

    # the loop ------------------------------------------------------------------
    def read(self) -> list[Phrase]:
        i = 0
        while i < len(self.tokens):
            i = self.readers[self.tokens[i].kind](i)
        return self.out.finish()

    def _read_inline(self, i: int) -> int:
        self.out.add("{" + " ".join(self.text(i)[1:-1].split()) + "}")
        return i + 1

    def _read_arpabet(self, i: int) -> int:
        """[HH AH0 L OW1]: phones in brackets, as inline phonemes."""
        self.out.add("{" + " ".join(self.text(i)[1:-1].split()) + "}")
        return i + 1

    def _read_markup(self, i: int) -> int:
        return i + 1  # <noise/>, <pitch=-.3>: instructions for a synthesiser, not words

    def _read_para(self, i: int) -> int:
        self.out.brk("major", "")
        self.address = False
        return i + 1

    def _read_major(self, i: int) -> int:
        text = self.text(i)
        if (text == "." and self.touching(i) and self.touching(i + 1)
                and self.kind(i - 1) in ("word", "number") and self.kind(i + 1) in
                ("word", "number")):
            self.out.add("dot")  # example.abc, version 2.0.1
            return i + 1
        if "?" in text:
            mark = "?!" if "!" in text else "?"
        else:
            mark = "!" if "!" in text else "." if "." in text else ";"
        self.out.brk("major", mark)
        self.address = False
        return i + 1

    def _read_ellipsis(self, i: int) -> int:
        self.out.brk("minor", "...")
        return i + 1

    def _read_minor(self, i: int) -> int:
        self.out.brk("minor", self.text(i))
        return i + 1

    def _read_dash(self, i: int) -> int:
        if self.kind(i - 1) == "number" and self.kind(i + 1) == "number" and (
                self._equation_near(i + 1)):
            self.out.add("minus")  # 5 - 3 = 2
            return i + 1
        if self._spoken_range(i - 1, i + 1):  # 4:00 am - 8:12 pm, 170 - 180
            self.out.add("to")
            return i + 1
        self.out.brk("minor", "--")
        return i + 1

    def _spoken_range(self, before: int, after: int) -> bool:
        """A dash between a quantity ending at token ``before`` and one starting at
        ``after`` reads "to" (times, amounts, years)."""
        ends = self.kind(before) in ("number", "time") or self.meridiem(before) == before + 1
        starts = self.kind(after) in ("number", "time", "money")
        return ends and starts and not self._equation_near(after)

    def _equation_near(self, i: int) -> bool:
        """An equals sign right after the number at token i (1-2=5 is a sum)."""
        return self.text(i + 1) == "=" or (self.kind(i) == "number" and self.text(i + 1) == "="
                                           ) or self.text(i - 2) == "="

    def _read_paren(self, i: int) -> int:
        self.out.brk("minor", "(" if self.text(i) in "([" else ")")
        return i + 1

    def _read_quote(self, i: int) -> int:
        if self.text(i) == '"':
            self.quotes ^= 1
        return i + 1

    def _read_other(self, i: int) -> int:
        return i + 1

    # addresses on the web ----------------------------------------------------------
    def _read_url(self, i: int) -> int:
        text = self.text(i)
        scheme = re.match(r"(https?|ftp|file)://(/?)", text, re.IGNORECASE)
        if scheme:
            name = scheme.group(1).lower()
            self.out.add(*(name.upper() if name != "file" else [name]), "colon", "slash",
                         "slash", *(["slash"] if scheme.group(2) else []))
            text = text[scheme.end():]
        self._read_address(text)
        return i + 1

    _read_email = _read_url
    _read_domain = _read_url

    def _read_address(self, text: str) -> None:
        """A web or e-mail address after its scheme: names as words (or letters when
        short and unpronounceable), digits as in codes, symbols by name."""
        pieces = re.findall(r"[A-Za-z]+|\d+|[^A-Za-z\d]", text)
        host_end = next((k for k, p in enumerate(pieces) if p == "/"), len(pieces))
        for k, piece in enumerate(pieces):
            if piece.isdigit():
                self.out.add(*address_number(piece))
            elif piece.isalpha():
                lower = piece.lower()
                last_label = k == host_end - 1 and k > 0 and pieces[k - 1] == "."
                if lower in _SPELLED_WORDS:
                    self.out.add(*_SPELLED_WORDS[lower])
                elif last_label and len(lower) == 2:  # a country: dot U K
                    self.out.add(*lower.upper())
                elif k == len(pieces) - 1 and k > 0 and pieces[k - 1] == "." and (
                        lower in _FILE_TYPES):
                    file_type = _FILE_TYPES[lower]
                    self.out.add(*(file_type if file_type.isupper() else [file_type]))
                else:
                    self.out.add(*self._split_compound(lower))
            elif piece in _ADDRESS_SYMBOLS:
                self.out.add(*_ADDRESS_SYMBOLS[piece].split())

    def _split_compound(self, word: str) -> list[str]:
        """``enterpriseservices`` -> enterprise services: a long unknown name that is two
        known words run together (as in addresses); otherwise the word itself."""
        if not 8 <= len(word) <= MAX_COMPOUND or self.pronounceable(word):
            return [word]
        for cut in range(3, len(word) - 2):
            if self.pronounceable(word[:cut]) and self.pronounceable(word[cut:]):
                return [word[:cut], word[cut:]]
        return [word]

    def _read_phone(self, i: int) -> int:
        """Telephone numbers digit by digit, a pause between groups; toll-free numbers'
        800 as a hundred and their letters as words; social security numbers alike."""
        text = self.text(i)
        if text.startswith("+"):
            code, text = re.match(r"\+(\d+)[\s-]?(.*)", text).groups()
            self.out.add("plus", *digits(code))
            self.out.brk("minor", ",")
        groups = re.findall(r"[A-Za-z]+|\d+", text)
        toll_free = re.fullmatch(r"1-8\d\d-.*", text) is not None
        for k, group in enumerate(groups):
            if group.isdigit():
                if toll_free and group == "800":  # one eight hundred
                    self.out.add(*cardinal(int(group)))
                else:
                    self.out.add(*digits(group))
            elif self.pronounceable(group.lower()) or group in _CAPITAL_WORDS:
                self._add_word(group)  # 1-800-GO-U-HAUL: GO and HAUL are words
            else:
                self.out.add(*group)
            if k + 1 < len(groups) and (group.isdigit() or groups[k + 1].isdigit()):
                self.out.brk("minor", ",")
        return i + 1

    def _read_ip(self, i: int) -> int:
        """123.123.0.40: each number digit by digit, "dot" between."""
        parts = self.text(i).split(".")
        for k, part in enumerate(parts):
            self.out.add(*digits(part), *(["dot"] if k + 1 < len(parts) else []))
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
        if i <= self.street_end:
            return self._read_street_word(i, after, period)
        # Titles before a name: Dr. Smith, Mr Jones; St./Dr. after a name are places.
        if lower in _TITLES and not text.isupper():
            if (lower in _STREETS and self.is_name(i - 1) and (period or not self.is_name(
                    i + 1)) and not (self.sentence_start(i - 1) and self.is_name(after))):
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
        month = _month(text)
        if month and self._month_date_ahead(i, after):
            return self._read_month(i, after)
        if month and period and text[0].isupper() and not text.isupper() and month != lower:
            self.out.add(month)  # Dec. without a day
            return self._after_abbreviation(after, period)
        if text in _STATES and self._state_here(i):
            return self._read_state(i)
        if (lower == "q" and self.is_integer(i + 1) and self.touching(i + 1)
                and self.is_integer(i + 2) and len(self.text(i + 1)) == 1):
            quarter = self._read_quarter(i + 2, int(self.text(i + 1)))  # Q3 2024
            if quarter:
                return quarter
        if (len(text) > 1 and text.isupper() and "'" not in text) or (
                len(text) > 2 and text.endswith("s") and text[:-1].isupper()
                and text[:-1].isalpha()):
            return self._read_capitals(i)
        if len(text) == 1 and text.isupper() and self._beside_ampersand(i):
            self.out.add(text)  # the last T of AT&T
            return i + 1
        if text == "I" and self._regnal_one(i):
            self.out.add("the", "first")  # Francis I
            return i + 1
        if text == "I" and self.text(i - 1).lower() in _COUNTING_WORDS:
            self.out.add("one")  # Chapter I
            return i + 1
        self._add_word(text)
        return i + 1

    def _regnal_one(self, i: int) -> bool:
        """``I`` after a name and before the end of a clause (Francis I--, Sam I.): the
        first of that name ("Then I." and "Not I!" are the pronoun)."""
        name = self.text(i - 1)
        return (self.is_name(i - 1) and name not in _SENTENCE_OPENERS
                and name not in _NOT_NAMES and name.lower() not in _COUNTING_WORDS
                and (i + 1 >= len(self.tokens) or self.kind(i + 1) in ("dash", "para")
                     or self.text(i + 1)[:1] in (".", "!", "?")))

    def _read_street_word(self, i: int, after: int, period: bool) -> int:
        """A word of a street address: directions and the street type spelled out."""
        text = self.text(i)
        lower = text.lower()
        if text in _DIRECTIONS and not self.shouted[i]:
            self.out.add(_DIRECTIONS[text])
            return after
        if i == self.street_end and lower in _STREET_SUFFIXES:
            self.out.add(_STREET_SUFFIXES[lower])
            self.street_end = -1
            return self._after_abbreviation(after, period)
        self._add_word(text)
        return i + 1

    def _after_abbreviation(self, i: int, period: bool) -> int:
        """An abbreviation's period also ends the sentence when the text ends there or a
        word that usually opens one follows (etc. The ...); U.S. Army reads on."""
        if period and (i >= len(self.tokens) or self.kind(i) == "para" or (
                self.is_name(i) and self.text(i) in _SENTENCE_OPENERS) or self.text(i) == "I"):
            self.out.brk("major", ".")
            self.address = False
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

    def _state_here(self, i: int) -> bool:
        """A two-letter state code after "Town," and before a ZIP code (Santa Clara, CA
        95051), or anywhere after a comma in a sentence that gave a street address."""
        if self.text(i - 1) != "," or self.kind(i - 2) != "word":
            return False
        zip_next = self.kind(i + 1) == "number" and _ZIP.fullmatch(self.text(i + 1))
        zip_after_comma = self.text(i + 1) == "," and _ZIP.fullmatch(self.text(i + 2))
        return bool(zip_next or zip_after_comma or self.address)

    def _read_state(self, i: int) -> int:
        self.out.add(*_STATES[self.text(i)].split())
        j = i + 2 if self.text(i + 1) == "," else i + 1
        if self.kind(j) == "number" and _ZIP.fullmatch(self.text(j)):
            if j > i + 1:
                self.out.brk("minor", ",")
            self.out.add(*digits(self.text(j)))  # a ZIP code: digit by digit
            if self.text(j + 1) == "-" and self.touching(j + 1) and self.is_integer(j + 2):
                self.out.add("dash", *digits(self.text(j + 2)))
                return j + 3
            return j + 1
        return i + 1

    def _read_dotted(self, i: int) -> int:
        text = self.text(i)
        lower = text.lower() if text.endswith(".") else text.lower() + "."
        if lower in _DOTTED:
            self.out.add(*_DOTTED[lower])
        else:
            self.out.add(*(c.upper() for c in text if c.isalpha()))
        if lower in ("e.g.", "i.e.") or not text.endswith("."):
            return i + 1
        return self._after_abbreviation(i + 1, True)

    # dates -------------------------------------------------------------------------
    def _month_date_ahead(self, i: int, after: int) -> bool:
        """A month name at token i is a date: a day or a year follows (July 25, jul 25
        2012, Jan-15), in any case; "may" and "march" in lower case only with a year or
        a day and a year, and abbreviations without their period only with a number."""
        lower = self.text(i).lower()
        nxt = after
        if self.text(after) == "-" and self.touching(after) and self.touching(after + 1):
            nxt = after + 1
        if not self.is_integer(nxt):
            return False
        value = self.text(nxt)
        is_day = len(value) <= 2 and 1 <= int(value) <= 31
        is_year = len(value) == 4
        if not (is_day or is_year):
            return False
        if lower in ("may", "march") and self.text(i) == lower:
            return is_year or (is_day and self.is_integer(nxt + 1)
                               and len(self.text(nxt + 1)) == 4)
        return True

    def _read_month(self, i: int, after: int) -> int:
        """Jan. 5 / January 5th, 2024 / Dec. 2024 / jul 25 2012 / Jan-15-2020."""
        self.out.add(_month(self.text(i)))
        if self.text(after) == "-" and self.touching(after):
            after += 1
        value = self.text(after)
        if len(value) == 4:
            self.out.add(*year(int(value)))
            return after + 1
        words = ordinal(int(value))
        nxt = after + 1
        suffix = self._suffix(nxt)
        if suffix in ("st's", "nd's", "rd's", "th's"):  # April 29th's meeting
            self.out.add(*words[:-1], words[-1] + "'s")
            return nxt + 1
        self.out.add(*words)
        if suffix in ("st", "nd", "rd", "th"):
            nxt += 1
        if self.text(nxt) in (",", "-") and self.is_integer(nxt + 1) and len(
                self.text(nxt + 1)) == 4:
            nxt += 1
        if self.is_integer(nxt) and len(self.text(nxt)) == 4:
            self.out.add(*year(int(self.text(nxt))))
            return nxt + 1
        return nxt

    def _day_of_month(self, day: int, month: str, j: int) -> int:
        """"the fifth of july" (no second "the"), then a year at token j or after a comma
        there; returns the index after what was read."""
        if self.out.last() != "the":
            self.out.add("the")
        self.out.add(*ordinal(day), "of", month)
        if self.text(j) == "," and self.is_integer(j + 1) and len(self.text(j + 1)) == 4:
            j += 1
        if self.is_integer(j) and len(self.text(j)) == 4:
            self.out.add(*year(int(self.text(j))))
            return j + 1
        return j

    def _month_after_day(self, j: int) -> str:
        """The month named at token j when it follows a day number (25 july, 26th May,
        25 sept.): any case, except "may" and "march" in lower case without a year."""
        month = _month(self.text(j))
        if not month or self.kind(j) != "word":
            return ""
        lower = self.text(j).lower()
        if lower in ("may", "march") and self.text(j) == lower:
            k = j + 1
            return month if self.is_integer(k) and len(self.text(k)) == 4 else ""
        return month

    def _read_quarter(self, j: int, quarter: int) -> int:
        """2Q22 / Q3 2024 (year at token j): "the second quarter of twenty twenty two";
        0 if token j is not a year."""
        value = self.text(j)
        if not 1 <= quarter <= 4 or len(value) not in (2, 4):
            return 0
        self.out.add("the", *ordinal(quarter), "quarter", "of",
                     *(cardinal(int(value)) if len(value) == 2 else year(int(value))))
        return j + 1

    def _read_mdy(self, i: int) -> int:
        first, second, third = self.text(i).split("/")
        self._read_date(int(first), int(second), third, (first, second, third))
        return i + 1

    def _read_ymd(self, i: int) -> int:
        first, second, third = re.split(r"[-/]", self.text(i))
        month, day = int(second), int(third)
        if not (1 <= month <= 12 and 1 <= day <= 31):
            for part in (first, second, third):
                self.out.add(*cardinal(int(part)))
            return i + 1
        self.out.add(_MONTHS[month - 1], *ordinal(day), *year(int(first)))
        return i + 1

    def _read_dmy(self, i: int) -> int:
        first, second, third = re.split(r"[.-]", self.text(i))
        self._read_date(int(first), int(second), third, (first, second, third))
        return i + 1

    def _read_date(self, first: int, second: int, year_text: str,
                   parts: tuple[str, str, str]) -> None:
        """A numeric date: month first (US order) unless the first number cannot be a
        month (25/12/2024 is the twenty fifth of december)."""
        if 1 <= first <= 12 and 1 <= second <= 31:
            self.out.add(_MONTHS[first - 1], *ordinal(second), *self._year_of(year_text))
        elif 1 <= second <= 12 and 1 <= first <= 31:
            self.out.add("the", *ordinal(first), "of", _MONTHS[second - 1],
                         *self._year_of(year_text))
        else:
            for part in parts:
                self.out.add(*cardinal(int(part)))

    @staticmethod
    def _year_of(text: str) -> list[str]:
        if len(text) == 2:  # '99 -> ninety nine, '05 -> oh five
            return ["oh", _ONES[int(text)]] if text.startswith("0") else cardinal(int(text))
        return year(int(text))

    # numbers ---------------------------------------------------------------------
    def _suffix(self, i: int) -> str:
        """A word glued to the number before it (1st, 1980s, 5kg), lower-cased, or ""."""
        return self.text(i).lower() if self.kind(i) == "word" and self.touching(i) else ""

    def _in_code(self, i: int) -> bool:
        """The number at token i is part of a code (W26s, ab9453, 25d08A): glued to a
        letter before it, or to letters followed by more digits after it."""
        if self.kind(i - 1) == "word" and self.touching(i) and len(self.text(i - 1)) <= 4:
            return not _month(self.text(i - 1)) and self.text(i - 1).lower() != "x"
        return (self.kind(i + 1) == "word" and self.touching(i + 1)
                and self.text(i + 1).lower() != "x"  # 2x8: a dimension
                and self.kind(i + 2) == "number" and self.touching(i + 2))

    def _read_number(self, i: int) -> int:
        text = self.text(i)
        plain = text.replace(",", "")
        if len(plain.partition(".")[0]) > _LONGEST_NUMBER:  # a serial or a wall of digits
            self.out.add(*digits(plain))
            return i + 1
        integer = plain.isdigit()
        if integer and self._suffix(i + 1) == "q" and self.is_integer(i + 2) and (
                self.touching(i + 2)):
            quarter = self._read_quarter(i + 2, int(plain))  # 2Q22
            if quarter:
                return quarter
        if plain in _SAID_AS_DIGITS and not self.touching(i + 1):
            self.out.add(*digits(plain))  # call 911
            return i + 1
        if integer and self._in_code(i):
            self.out.add(*code_number(plain))
            if self.kind(i + 1) == "word" and self.touching(i + 1) and len(
                    self.text(i + 1)) == 1:
                self.out.add(self.text(i + 1).upper())  # W26s: the s is a letter
                return i + 2
            return i + 1
        value = float(plain) if plain.strip(".") else 0.0
        suffix = self._suffix(i + 1)
        nxt = self.text(i + 1)
        if integer:
            special = self._read_integer_forms(i, plain, suffix)
            if special:
                return special
        if nxt == "/" and self.touching(i + 1) and self.touching(i + 2) and integer and (
                self.is_integer(i + 2) and len(self.text(i + 2)) <= _LONGEST_NUMBER):
            if self.text(i + 3) == "/" or self.text(i - 1) == "/":  # 31/31/100: a code
                self.out.add(*self._number_words(text), "slash")
                return i + 2
            return self._read_fraction(i)
        if nxt == "%":
            self.out.add(*decimal(text), "percent")
            return self._range_after(i + 2)
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
        if nxt == '"' and self.touching(i + 1) and not self.quotes:
            self.out.add(*decimal(text), "inch" if value == 1 else "inches")  # 12"
            return i + 2
        if (nxt == "'" and self.touching(i + 1) and self.is_integer(i + 2)
                and self.text(i + 3) == '"' and self.touching(i + 3)):  # 5'11"
            inches = int(self.text(i + 2))
            self.out.add(*decimal(text), "foot" if value == 1 else "feet", *cardinal(inches),
                         "inch" if inches == 1 else "inches")
            return i + 4
        measured = self._read_measure(i, text, value)
        if measured:
            return measured
        after = self.meridiem(i + 1)
        if after and integer and 0 < int(plain) <= 12:
            self.out.add(*cardinal(int(plain)))
            return self._after_time(i + 1)
        whole, _, fraction_digits = plain.partition(".")
        if (after and len(fraction_digits) == 2 and whole and 0 < int(whole) <= 12
                and int(fraction_digits) < 60):  # 1.59 p.m.: a time
            self._add_clock(int(whole), int(fraction_digits))
            return self._after_time(i + 1)
        if (nxt == "-" and self.touching(i + 1) and self.kind(i + 2) == "number"
                and self.touching(i + 2)):
            if self._equation_near(i + 2):
                self.out.add(*self._number_words(text), "minus")  # 1-2=5
                return i + 2
            # 1234-123kg: a range of measures, not of years
            words = (decimal(text) if self._unit(i + 3) or self._suffix(i + 3) in _UNITS
                     else self._number_words(text))
            self.out.add(*words, "to")  # 5-10, 1990-1995
            return i + 2
        if nxt.lower() == "x" and self.kind(i + 2) == "number" and (
                self.unit_after(i + 3) or (integer and self.is_integer(i + 2))):
            self.out.add(*self._number_words(text), "by")  # 25 x 7 m, a 3x3 grid
            return i + 2
        self.out.add(*self._number_words(text))
        return i + 1

    def _read_integer_forms(self, i: int, plain: str, suffix: str) -> int:
        """Readings of a whole number that depend on what follows it: ordinals, decades,
        possessives, dates, quarters, eras, house numbers, mixed fractions, 401(k).
        Returns the index after them, or 0 when none applies."""
        number = int(plain)
        if suffix in ("st", "nd", "rd", "th"):
            month = self._month_after_day(i + 2)
            if month and 1 <= number <= 31:
                return self._day_of_month(number, month, i + 3)
            words = ordinal(number)
            if self.text(i + 2) == "'" and self.glued(i + 3, "s") and self.touching(i + 2):
                self.out.add(*words[:-1], words[-1] + "'s")  # 29th's meeting
                return i + 4
            self.out.add(*words)
            return i + 2
        if suffix in ("th's", "st's", "nd's", "rd's"):
            words = ordinal(number)
            self.out.add(*words[:-1], words[-1] + "'s")
            return i + 2
        if suffix == "s" or (
                len(plain) == 4 and plain.endswith("0") and self.text(i + 1) == "s"
                and not self.touching(i + 1) and self.kind(i + 2) != "word"):
            words = self._integer_words(plain, as_year=len(plain) == 4)
            self.out.add(*words[:-1], plural(words[-1]))  # 1980s, '90s, 1980 s
            return self._range_after(i + 2)
        if (self.text(i + 1) == "'" and self.touching(i + 1) and self.glued(i + 2, "s")):
            words = self._integer_words(plain, as_year=len(plain) == 4)
            self.out.add(*words[:-1], words[-1] + "'s")  # 80's, 12's
            return i + 3
        if 1 <= number <= 31 and len(plain) <= 2:
            month = self._month_after_day(i + 1)
            if month:
                j = i + 2
                if self.text(j) == "." and self.touching(j):  # 25 sept. (2012)
                    after = self._day_of_month(number, month, j + 1)
                    return after if after > j + 1 else self._after_abbreviation(after, True)
                return self._day_of_month(number, month, j)
        era = self._era(i + 1)
        if era and len(plain) <= 4:
            self.out.add(*pairs(number), *era[0])  # 340 A.D
            return era[1]
        if (plain in _PLAN_SECTIONS and self.text(i + 1) == "(" and self.touching(i + 1)
                and len(self.text(i + 2)) == 1 and self.text(i + 3) == ")"):
            self.out.add(*pairs(number), self.text(i + 2).upper())  # 401(k)
            return i + 4
        if not plain.startswith("0") and len(plain) <= 5:
            street_end = self._street_ahead(i + 1)
            if street_end:
                self.out.add(*(pairs(number) if number < 10000 else digits(plain)))
                self.street_end = street_end
                self.address = True
                return i + 1
        if (self.kind(i + 1) == "number" and not self.touching(i + 1)
                and self.text(i + 2) == "/" and self.touching(i + 2) and self.touching(i + 3)
                and self.is_integer(i + 1) and self.is_integer(i + 3)):
            self.out.add(*cardinal(number), "and")  # 2 1/2: two and a half
            return self._read_fraction(i + 1, mixed=True)
        return 0

    def _era(self, i: int) -> tuple[list[str], int] | None:
        """AD/BC/CE/BCE (dotted or not) at token i: its letters and the index after."""
        text = self.text(i)
        letters = text.replace(".", "")
        if self.kind(i) in ("word", "dotted") and letters.lower() in _ERAS and (
                letters.isupper()):
            after = i + 1
            if self.kind(i) == "word" and self.text(i + 1) == "." and self.touching(i + 1):
                after = i + 2
            return list(letters.upper()), after
        return None

    def _street_ahead(self, i: int) -> int:
        """The index of the street type ending an address that starts at token i (after a
        house number): [N|S|E|W] then one to three capitalised words or ordinals, then St,
        Ave, Expy, ... in any case; 0 if there is none."""
        j = i
        if self.text(j) in _DIRECTIONS:
            j += 1
        names = 0
        while names < 4:
            if self.kind(j) == "word" and self.text(j).lower() in _STREET_SUFFIXES and (
                    names > 0):
                return j
            if self.is_name(j) or (self.text(j).isupper() and self.kind(j) == "word"):
                j += 1
            elif self.is_integer(j) and self._suffix(j + 1) in ("st", "nd", "rd", "th"):
                j += 2
            else:
                return 0
            names += 1
        return 0

    def _range_after(self, i: int) -> int:
        """After a quantity ending before token i: a glued "-" and another quantity read
        as "to" (10%-20%, 1960s-80s, $250-$300); returns where reading goes on."""
        if (self.text(i) == "-" and self.touching(i) and self.touching(i + 1)
                and self.kind(i + 1) in ("number", "money", "time")):
            self.out.add("to")
            return i + 1
        return i

    def _read_measure(self, i: int, text: str, value: float) -> int:
        """A number and its unit, maybe after a scale word, maybe per another unit:
        5 km, 70kg, 100 million kg, 12/kg, 12kg/kg, 41 km³, 1 mbps. 0 if no unit."""
        j = i + 1
        words = decimal(text)
        if self.text(j).lower() in _COUNT_SCALES and self._unit(j + 1):
            words.append(self.text(j).lower())
            j += 1
            value = 2.0  # a hundred million kilograms: plural
        unit = self._unit(j)
        if unit:
            name, after, power = unit
            spoken = _UNITS[name][value != 1].split()
            self.out.add(*words, *(["square"] if power == 2 else ["cubic"] if power == 3
                                    else []), *spoken)
            return self._per_unit(after)
        if self.text(j) == "/" and self.touching(j) and self.touching(j + 1):
            per = self._per_name(j + 1)
            if per:
                self.out.add(*words, "per", *per[0])  # 12/kg
                return per[1]
        return 0

    def _per_unit(self, i: int) -> int:
        """"/kg" or "/mo" at token i read as "per kilogram"; the index after."""
        if self.text(i) == "/" and self.touching(i) and self.touching(i + 1):
            per = self._per_name(i + 1)
            if per:
                self.out.add("per", *per[0])
                return per[1]
        return i

    def _per_name(self, i: int) -> tuple[list[str], int] | None:
        """The singular name of the unit at token i, and the index after it."""
        name = self.text(i).lower()
        if self.kind(i) != "word":
            return None
        if name in _UNITS:
            return _UNITS[name][0].split(), i + 1
        if name in _PER_UNITS:
            return [_PER_UNITS[name]], i + 1
        if len(name) == 1:
            return [name.upper()], i + 1  # cc/s: per S
        return None

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

    def _unit(self, i: int) -> tuple[str, int, int] | None:
        """The unit at token i (``kg``, ``km/h``, ``m2``, ``km³``), the index after it and
        its power (1, or 2/3 for square and cubic), or None."""
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
        # Single letters and "mi" are units only when they touch the number (5m, 3mi),
        # end a dimension (25 x 7 m) or carry a power or a "per" (9.8 m/s, 2 m3).
        if (len(name) == 1 or name == "mi") and not self.touching(i) and (
                self.text(i - 2).lower() != "x") and not (
                self.text(after) in ("/", "2", "3") and self.touching(after)):
            return None
        if self.text(i) == "M":  # 5M is more often a million than five metres
            return None
        power = 1
        if (name in _SQUARED_UNITS and self.text(after) in ("2", "3")
                and self.touching(after)):
            power, after = int(self.text(after)), after + 1
        return name, after, power

    def _read_fraction(self, i: int, mixed: bool = False) -> int:
        """3/4, 22/3, 1/4th; in a mixed number (``mixed``: 2 1/2) a half and a quarter
        are "a half", "a quarter"; 24/7 and the like are their two numbers."""
        numerator = int(self.text(i).replace(",", ""))
        denominator = int(self.text(i + 2))
        if (numerator, denominator) in _FRACTION_IDIOMS:
            self.out.add(*cardinal(numerator), *cardinal(denominator))
        else:
            words = fraction(numerator, denominator)
            if mixed and numerator == 1 and denominator in (2, 4):
                words[0] = "a"
            self.out.add(*words)
        after = i + 3
        if self._suffix(after) in ("st", "nd", "rd", "th"):  # 1/4th is a quarter
            after += 1
        unit = self._unit(after)
        if unit:  # 4 1/2 lbs
            name, after, power = unit
            self.out.add(*(["square"] if power == 2 else ["cubic"] if power == 3 else []),
                         *_UNITS[name][1].split())
        return after

    def _add_clock(self, hours: int, minutes: int) -> None:
        words = cardinal(hours)
        if minutes and minutes < 10:
            words += ["oh", _ONES[minutes]]
        elif minutes:
            words += cardinal(minutes)
        self.out.add(*words)

    def _after_time(self, i: int) -> int:
        """After a clock time: its AM/PM (any spelling) and time zone at token i, then a
        range to another time ("2pm-5pm", "4:00 am - 8:12 pm")."""
        after = self.meridiem(i)
        dotted = False  # the last token read was an abbreviation with its period
        if after:
            self.out.add(*(c.upper() for c in self.text(i) if c.isalpha()),
                         *(["M"] if after == i + 3 else []))
            dotted = self.text(after - 1).endswith(".") and self.kind(after - 1) == "dotted"
            i = after
        zone = self.text(i).replace(".", "")
        if zone.lower() in _TIME_ZONES and self.kind(i) in ("word", "dotted"):
            self.out.add(*zone.upper())
            dotted = self.text(i).endswith(".")
            i += 1
        ranged = self._range_after(i)
        if ranged == i and dotted:  # 7 a.m. The next day ...
            return self._after_abbreviation(i, True)
        return ranged

    def _read_time(self, i: int) -> int:
        parts = [int(p) for p in self.text(i).split(":")]
        hours, minutes = parts[0], parts[1]
        seconds = parts[2] if len(parts) > 2 else None
        meridiem = bool(self.meridiem(i + 1))
        if hours > 23 or minutes > 59 or (seconds or 0) > 59:
            for part in parts:  # a score or a ratio
                self.out.add(*cardinal(part))
            return i + 1
        if seconds is not None:  # 14:10:30, a time to the second
            self.out.add(*cardinal(hours), "hour" if hours == 1 else "hours",
                         *cardinal(minutes), "minute" if minutes == 1 else "minutes",
                         "and", *cardinal(seconds), "second" if seconds == 1 else "seconds")
        elif minutes == 0:
            words = cardinal(hours)
            if not meridiem:
                words += ["o'clock"] if 1 <= hours <= 12 else ["hundred"]
            self.out.add(*words)
        else:
            self._add_clock(hours, minutes)
        return self._after_time(i + 1)

    def _read_ratio(self, i: int) -> int:
        """2:8, 16:9: "two to eight"."""
        first, second = self.text(i).split(":")
        self.out.add(*decimal(first), "to", *decimal(second))
        return i + 1

    def _read_money(self, i: int) -> int:
        symbol = self.text(i)
        prefix = _DOLLAR_PREFIXES.get(symbol[:-1], ()) if len(symbol) > 1 else ()
        unit, units, sub, subs = _CURRENCIES[symbol[-1]]
        if self.kind(i + 1) != "number":
            self.out.add(*prefix, unit)  # a bare symbol is read by its name: test$
            return i + 1
        amount = self.text(i + 1).replace(",", "")
        after = i + 2
        scale = self.text(after).lower() if self.kind(after) == "word" else ""
        if scale in _MONEY_SCALES and (self.touching(after) or len(scale) > 2 or (
                self.kind(after + 1) not in ("word", "number"))):
            self.out.add(*decimal(amount), _MONEY_SCALES[scale], *prefix, units)
            return self._money_after(after + 1)
        whole, _, cents_text = amount.partition(".")
        if len(cents_text) > 2 and not cents_text[2:].strip("0"):
            cents_text = cents_text[:2]  # $2.000, $20.500: the zeros say nothing
        if len(cents_text) > 2 or (cents_text and not sub) or len(whole) > _LONGEST_NUMBER:
            self.out.add(*decimal(amount), *prefix, units)
            return self._money_after(after)
        number = int(whole or "0")
        cents = int(cents_text.ljust(2, "0")) if cents_text else 0
        words: list[str] = []
        if number or not cents:
            words += [*cardinal(number), *prefix, unit if number == 1 else units]
        if cents:
            words += [*cardinal(cents), sub if cents == 1 else subs]
        self.out.add(*words)
        return self._money_after(after)

    def _money_after(self, i: int) -> int:
        """After an amount: "/mo" (per month) and a range to another amount."""
        i = self._per_unit(i)
        if (self.text(i) == "-" and self.touching(i) and self.kind(i + 1) == "money"
                and self.touching(i + 1)):
            self.out.add("to")  # $250-$300
            return i + 1
        return i

    # symbols ---------------------------------------------------------------------
    def _read_symbol(self, i: int) -> int:
        symbol = self.text(i)
        nxt_kind = self.kind(i + 1)
        glued_next = self.touching(i + 1)
        if symbol == "-":
            if self.kind(i - 1) == "number" and nxt_kind == "number" and (
                    self._equation_near(i + 1)):
                self.out.add("minus")  # 1- 2 = 5
            elif glued_next and nxt_kind in ("number", "money") and not (
                    self.touching(i) and self.kind(i - 1) not in _NOT_OPERANDS):
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
        if symbol == "*":
            if self.kind(i - 1) == "number" and nxt_kind == "number":
                self.out.add("times")  # 2*8
            return i + 1
        if symbol == "/":
            before, after = self.text(i - 1).lower(), self.text(i + 1).lower()
            if (before, after) == ("and", "or") or self.kind(i - 1) not in ("word", "number") \
                    or nxt_kind != "word":
                return i + 1  # and/or, a slash alone
            per = self._per_name(i + 1)
            if per and self.touching(i) and glued_next and len(before) <= 3 and (
                    after.islower()):
                self.out.add("per", *per[0])  # cc/s
                return per[1]
            if self.touching(i):  # upgrade/update, 14/ they're; "city / state" is a pause
                self.out.add("slash")
            return i + 1
        if symbol in _SYMBOLS:
            self.out.add(*_SYMBOLS[symbol])
        return i + 1  # * ^ \ | _ and the like: no sound


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
