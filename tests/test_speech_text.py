"""Text normalisation: what a reader would say for numbers, money, dates, abbreviations,
acronyms and symbols; phrase breaks; unicode clean-up; empty and huge input."""

from __future__ import annotations

import logging

import pytest

from kantor.engine.speech.lexicon import Lexicon
from kantor.engine.speech.text import (
    MAX_PHRASE_WORDS,
    TextError,
    cardinal,
    clean_unicode,
    fraction,
    normalize,
    ordinal,
    year,
)


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon(fallback=None)


def said(text: str, lexicon: Lexicon | None = None) -> str:
    """All the words of all phrases, space-separated."""
    pronounceable = lexicon.reads_as_word if lexicon is not None else None
    return " ".join(w for phrase in normalize(text, pronounceable) for w in phrase.words)


@pytest.mark.parametrize("text, words", [
    # cardinals, decimals, negatives, thousands separators, leading zeros
    ("I have 42 cats", "i have forty two cats"),
    ("0", "zero"),
    ("It weighs 3.14 kilos", "it weighs three point one four kilos"),
    ("-5 and -0.5", "minus five and minus zero point five"),
    ("1,234,567", "one million two hundred thirty four thousand five hundred sixty seven"),
    ("100,000 people", "one hundred thousand people"),
    ("agent 007", "agent zero zero seven"),
    ("pages 5-10", "pages five to ten"),
    ("a 5-year-old", "a five year old"),
    # ordinals
    ("the 1st, 2nd, 3rd, 4th", "the first second third fourth"),
    ("22nd and 103rd and 11th and 12th", "twenty second and one hundred third and eleventh "
                                         "and twelfth"),
    # years and decades
    ("in 1984", "in nineteen eighty four"),
    ("in 2005", "in two thousand five"),
    ("in 1905", "in nineteen oh five"),
    ("in 1900 and 2000", "in nineteen hundred and two thousand"),
    ("in 2024", "in twenty twenty four"),
    ("the 1980s and '90s", "the nineteen eighties and nineties"),
    # currency
    ("$5", "five dollars"),
    ("$1", "one dollar"),
    ("$3.50", "three dollars fifty cents"),
    ("$0.99", "ninety nine cents"),
    ("$1,000", "one thousand dollars"),
    ("£2", "two pounds"),
    ("£2.01", "two pounds one penny"),
    ("€10", "ten euros"),
    ("¥500", "five hundred yen"),
    ("$2.5 million", "two point five million dollars"),
    ("$5k", "five thousand dollars"),
    ("-$5", "minus five dollars"),
    ("99¢", "ninety nine cents"),
    # times
    ("3:30 pm", "three thirty P M"),
    ("3:30pm", "three thirty P M"),
    ("10:05", "ten oh five"),
    ("3:00", "three o'clock"),
    ("7 a.m.", "seven A M"),
    ("15:45", "fifteen forty five"),
    # dates
    ("12/25/2024", "december twenty fifth twenty twenty four"),
    ("25/12/2024", "the twenty fifth of december twenty twenty four"),  # day first
    ("2024-07-04", "july fourth twenty twenty four"),
    ("Jan. 5", "january fifth"),
    ("Jan. 5, 2024", "january fifth twenty twenty four"),
    ("March 3rd", "march third"),
    ("25 December", "the twenty fifth of december"),
    ("Dec. 2024", "december twenty twenty four"),
    # fractions and units
    ("1/2 cup", "one half cup"),
    ("3/4", "three quarters"),
    ("5/8", "five eighths"),
    ("24/7", "twenty four seven"),
    ("5 km", "five kilometers"),
    ("1 kg", "one kilogram"),
    ("70kg", "seventy kilograms"),
    ("60 mph", "sixty miles per hour"),
    ("15 km/h", "fifteen kilometers per hour"),
    ("20°C", "twenty degrees celsius"),
    # abbreviations
    ("Dr. Smith", "doctor smith"),
    ("Mr. Jones and Mrs. Brown", "mister jones and missus brown"),
    ("Mr Jones", "mister jones"),
    ("St. Louis", "saint louis"),
    ("on Main St.", "on main street"),
    ("apples, pears, etc.", "apples pears et cetera"),
    ("Ali vs. Frazier", "ali versus frazier"),
    ("fruit, e.g. apples", "fruit for example apples"),
    ("i.e. this", "that is this"),
    ("No. 5", "number five"),
    ("Acme Inc.", "acme incorporated"),
    # symbols
    ("50%", "fifty percent"),
    ("rock & roll", "rock and roll"),
    ("3 + 4 = 7", "three plus four equals seven"),
    ("me @ home", "me at home"),
    ("#1", "number one"),
    ("me@example.com", "me at example dot com"),
    ("www.example.com", "W W W dot example dot com"),
    ("and/or", "and or"),
    # roman numerals
    ("Henry VIII", "henry the eighth"),
    ("World War II", "world war two"),
    ("Chapter IV", "chapter four"),
])
def test_normalises_like_a_reader(text, words):
    assert said(text) == words


@pytest.mark.parametrize("text, words", [
    # telephone numbers: digit by digit, groups kept; toll-free 800; local and SSN forms
    ("Call 212-555-0199.", "call two one two five five five zero one nine nine"),
    ("+1 (617) 555-0142", "plus one six one seven five five five zero one four two"),
    ("Call 555-0123 now", "call five five five zero one two three now"),
    ("078-05-1120", "zero seven eight zero five one one two zero"),
    ("1-800-CALL-NOW", "one eight hundred call now"),
    ("1-888-FLOWERS", "one eight eight eight flowers"),
    ("Call 911 now", "call nine one one now"),
    ("10.0.0.1", "one zero dot zero dot zero dot one"),
    # times: seconds, 12-hour forms with any spelling of am/pm, zones, ranges, ratios
    ("07:15:09", "seven hours fifteen minutes and nine seconds"),
    ("9.45 pm", "nine forty five P M"),
    ("11:30 a.m", "eleven thirty A M"),
    ("6 P.M. PST", "six P M P S T"),
    ("8am-10am", "eight A M to ten A M"),
    ("19:00", "nineteen hundred"),
    ("5:3", "five to three"),
    # dates: any case, day first, numeric forms in every order, quarters, eras
    ("march 3 2021", "march third twenty twenty one"),
    ("3 march 2021", "the third of march twenty twenty one"),
    ("on 4 july", "on the fourth of july"),
    ("25 sept. 2020", "the twenty fifth of september twenty twenty"),
    ("the 12th of May", "the twelfth of may"),
    ("2021/03/04", "march fourth twenty twenty one"),
    ("04.03.2021", "april third twenty twenty one"),
    ("31.12.1999", "the thirty first of december nineteen ninety nine"),
    ("31-12-1999", "the thirty first of december nineteen ninety nine"),
    ("Dec-24-2021", "december twenty fourth twenty twenty one"),
    ("in 4Q21", "in the fourth quarter of twenty one"),
    ("44 BC", "forty four B C"),
    # fractions: improper, mixed (a half), ordinal suffixes, over one
    ("7/8", "seven eighths"),
    ("11/4", "eleven quarters"),
    ("3 3/4 cups", "three and three quarters cups"),
    ("1 1/2 km", "one and a half kilometers"),
    ("1/3rd", "one third"),
    ("9/1", "nine over one"),
    ("a 50/50 chance", "a fifty fifty chance"),
    # measures: plurals, per, powers, scales, dimensions, feet and inches
    ("500 mbps", "five hundred megabits per second"),
    ("9.8 m/s", "nine point eight meters per second"),
    ("3 kg/m", "three kilograms per meter"),
    ("40 km²", "forty square kilometers"),
    ("2 m3", "two cubic meters"),
    ("5 million kg", "five million kilograms"),
    ("a 3x5 card", "a three by five card"),
    ("2.5x faster", "two point five x faster"),
    ("6'2\" tall", "six feet two inches tall"),
    # addresses: house numbers in pairs, directions, street types, states and ZIP codes
    ("350 W 5th Ave, New York, NY 10118",
     "three fifty west fifth avenue new york new york one zero one one eight"),
    ("It is on Elm St. Next door", "it is on elm street next door"),
    ("Hi, OK?", "hi ok"),  # a state code only in an address
    # web and e-mail addresses
    ("support@kantor.org", "support at kantor dot org"),
    ("https://kantor.org/docs", "H T T P S colon slash slash kantor dot org slash docs"),
    ("user_42@mail.co.uk", "user underscore four two at mail dot co dot U K"),
    ("see www.site.de today", "see W W W dot site dot D E today"),
    # money: cents only, trailing zeros, per unit, ranges, other currencies and scales
    ("$.75", "seventy five cents"),
    ("$3.000", "three dollars"),
    ("$4.125", "four point one two five dollars"),
    ("€12/mo", "twelve euros per month"),
    ("$5-$10", "five dollars to ten dollars"),
    ("₩500", "five hundred won"),
    ("US$20", "twenty U S dollars"),
    ("¥5 b", "five billion yen"),
    ("price in $", "price in dollar"),
    # ranges
    ("3pm-6pm", "three P M to six P M"),
    ("1970s-90s", "nineteen seventies to nineties"),
    ("20%-30%", "twenty percent to thirty percent"),
    # codes and serial numbers: letters spelled, long digit runs digit by digit
    ("flight BA2490", "flight B A two four nine zero"),
    ("1234567890", "one two three four five six seven eight nine zero"),
    ("403(b)", "four oh three B"),
    # math
    ("7-3=4", "seven minus three equals four"),
    ("9 - 4 = 5", "nine minus four equals five"),
    # markup is not read; phones in brackets are inline phonemes
    ("hello <break/> there", "hello there"),
    ("say [K AE1 N T ER0] now", "say {K AE1 N T ER0} now"),
    ("[5 and 6]", "five and six"),
    # slashes, section signs, possessive numbers, the first of a name
    ("actor/director", "actor slash director"),
    ("§ 5", "section five"),
    ("12's", "twelve's"),
    ("King Louis I.", "king louis the first"),
    ("Then I.", "then i"),
])
def test_reads_semiotic_classes_like_a_reader(lexicon, text, words):
    assert said(text, lexicon) == words


def test_phone_groups_are_phrases():
    assert breaks("Call 212-555-0199.") == [("call two one two", "minor", ","),
                                           ("five five five", "minor", ","),
                                           ("zero one nine nine", "end", ".")]


def test_an_am_pm_period_can_end_a_sentence():
    assert breaks("Up at 7 a.m. The rest slept.") == [("up at seven A M", "major", "."),
                                                      ("the rest slept", "end", ".")]


def test_huge_numbers_with_separators_are_quantities():
    text = "1,234,567,890,123,456,789,000"
    assert said(text).startswith("one sextillion two hundred thirty four quintillion")


@pytest.mark.parametrize("text, words", [
    ("NASA launched it", "nasa launched it"),       # in the dictionary as a word
    ("the FBI agent", "the F B I agent"),            # dictionary entry is its letters
    ("the USA", "the U S A"),
    ("an XQZT unit", "an X Q Z T unit"),            # unknown: spelled
    ("the U.S. Army", "the U S army"),
    ("IT and US", "I T and U S"),                   # two capitals are initials ...
    ("say NO", "say no"),                           # ... unless a common word
    ("AT&T", "A T and T"),
    ("CDs", "C Ds"),
    ("MP3", "M P three"),
    ("I SAID STOP THAT NOW", "i said stop that now"),  # shouting is not an acronym
])
def test_acronyms_read_as_words_or_letters(lexicon, text, words):
    assert said(text, lexicon) == words


def test_acronyms_without_a_dictionary_use_a_length_rule():
    assert said("NASA and FBI") == "nasa and F B I"


def test_number_spellers():
    assert cardinal(0) == ["zero"]
    assert cardinal(19) == ["nineteen"]
    assert " ".join(cardinal(1_000_001)) == "one million one"
    assert " ".join(cardinal(-21)) == "minus twenty one"
    assert " ".join(cardinal(10**18)) == "one quintillion"
    assert " ".join(cardinal(10**24)) == "one " + " ".join(["zero"] * 24)
    assert " ".join(ordinal(100)) == "one hundredth"
    assert " ".join(ordinal(40)) == "fortieth"
    assert " ".join(year(2010)) == "twenty ten"
    assert " ".join(year(1066)) == "ten sixty six"
    assert " ".join(year(800)) == "eight hundred"
    assert " ".join(fraction(1, 3)) == "one third"
    assert " ".join(fraction(2, 3)) == "two thirds"


def test_huge_numbers_are_read_digit_by_digit():
    text = "9" * 5000  # past int()'s default string limit
    assert said(text).split() == ["nine"] * 5000


def breaks(text: str) -> list[tuple[str, str, str]]:
    return [(" ".join(p.words), p.break_after, p.mark) for p in normalize(text)]


def test_punctuation_becomes_phrase_breaks():
    assert breaks("Hello, world! How are you? Fine; thanks: really.") == [
        ("hello", "minor", ","), ("world", "major", "!"), ("how are you", "major", "?"),
        ("fine", "major", ";"), ("thanks", "minor", ":"), ("really", "end", ".")]
    assert breaks("Wait -- what (I think) is this... no") == [
        ("wait", "minor", "--"), ("what", "minor", "("), ("i think", "minor", ")"),
        ("is this", "minor", "..."), ("no", "end", "")]
    assert breaks("one — two – three") == [("one", "minor", "--"), ("two", "minor", "--"),
                                           ("three", "end", "")]


def test_questions_are_marked_for_prosody():
    phrases = normalize("Did you see it? Really?! Yes.")
    assert [p.question for p in phrases] == [True, True, False]
    assert phrases[1].mark == "?!"


def test_repeated_breaks_keep_the_strongest():
    assert breaks("Hi,. there!!") == [("hi", "major", "."), ("there", "end", "!")]


def test_paragraphs_break_and_abbreviations_can_end_sentences():
    assert breaks("A title\n\nThe text") == [("a title", "major", ""), ("the text", "end", "")]
    assert breaks("I like apples, etc. The end") == [
        ("i like apples", "minor", ","), ("et cetera", "major", "."), ("the end", "end", "")]


def test_long_phrases_are_split_near_a_conjunction():
    words = " ".join(f"w{chr(97 + i % 26)}" for i in range(25))
    phrases = normalize(f"{words} and more words follow here in time for tea")
    assert [len(p.words) for p in phrases] == [25, 9]
    assert phrases[0].break_after == "minor" and phrases[1].words[0] == "and"
    phrases = normalize(" ".join(["la"] * 100))
    assert [len(p.words) for p in phrases] == [30, 30, 30, 10]


def test_unicode_is_folded_to_ascii():
    assert said("Café naïve résumé Straße Øre") == "cafe naive resume strasse ore"
    assert said("“Quoted” ‘single’ don’t") == "quoted single don't"
    assert said("½ ﬁne ① Ｆｕｌｌ") == "one half fine one full"
    assert said("٣ apples") == "three apples"  # an Arabic-Indic digit


def test_emoji_control_and_foreign_letters_are_dropped_and_counted(caplog):
    text = "hello 😀 wo\x00rld 👍 and 日本 \x07x"
    cleaned, dropped = clean_unicode(text)
    assert dropped == {"symbol": 2, "control": 2, "unsupported": 2}
    assert "\x00" not in cleaned and "😀" not in cleaned
    with caplog.at_level(logging.WARNING):
        assert said(text) == "hello world and x"
    assert "2 control character(s)" in caplog.text and "2 emoji/symbol(s)" in caplog.text


@pytest.mark.parametrize("text", ["", "   ", "\n\t\r\n", "😀😀", "...", "\x00\x01"])
def test_empty_input_gives_no_phrases(text):
    assert normalize(text) == []


def test_inline_phonemes_pass_through_and_unclosed_braces_are_an_error():
    assert normalize("say {HH  AH0 L OW1 } now")[0].words == ["say", "{HH AH0 L OW1}", "now"]
    with pytest.raises(TextError, match="unmatched '\\{' at character 4"):
        normalize("say {HH AH0 now")
    with pytest.raises(TextError, match="unmatched '}'"):
        normalize("say HH} now")


def test_a_megabyte_of_text_is_handled(lexicon):
    sentence = ("Dr. Smith paid $3.50 on Jan. 5, 2024 at 3:30 pm! NASA and the FBI met "
                "1,234 times (really?); the café’s 50% discount — wow 😀. ")
    text = sentence * (1_000_000 // len(sentence))
    phrases = normalize(text, lexicon.reads_as_word)
    repeats = len(text) // len(sentence)
    assert len(phrases) == 5 * repeats
    assert sum(len(p.words) for p in phrases) == len(said(sentence, lexicon).split()) * repeats
    assert max(len(p.words) for p in phrases) <= MAX_PHRASE_WORDS


@pytest.mark.parametrize("text", [
    "word " * 200_000,       # one sentence of a million characters
    "1" * 1_000_000,         # one number of a million digits
    "a." * 500_000,          # a dotted acronym that never ends
    "1.1." * 250_000,
    "{AH0} " * 150_000,
    "é😀日" * 300_000,
])
def test_pathological_megabytes_are_linear_and_capped(text):
    phrases = normalize(text)
    assert phrases and max(len(p.words) for p in phrases) <= MAX_PHRASE_WORDS
