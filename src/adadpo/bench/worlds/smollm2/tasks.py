"""Prompts with a checkable truth, and the program that scores an answer against it.

Every prompt comes from a template and word lists (:mod:`adadpo.bench.worlds.smollm2.wordlists`), so the truth
is known without a judge model (nine categories of things, ten goals, forty colored things). Seven kinds, chosen
so that a 135M-parameter instruct model's own samples vary in true quality and in length:

============  ===============================================  ==================================================
kind          example                                          true quality ``q`` in [0, 1]
============  ===============================================  ==================================================
capital       What is the capital of Peru?                     1 if the capital is named and no other capital
                                                               is offered; 0.5 if a wrong one is too; else 0
arithmetic    What is 7 + 5?                                   1 if the result is the only number besides the
                                                               operands; 0.5 if other numbers appear too; else 0
                                                               (digits or words: "thirty-five")
list          List three fruits. (four wordings)               ``min(v, n) / n * n / max(v, n)`` for ``v`` distinct
                                                               valid items (recall, and precision against listing
                                                               more than asked)
color         What color is grass?                             1 if the color (or a shade of it) is named and no
                                                               other color is; 0.5 if another is named too; else 0
include       Write one sentence about the sea that uses the   share of the required words used, times
              words "wave" and "salt".                         ``1 / sentences``
limit         Give one tip for sleeping better in at most 12   on topic (a word starts with a topic stem) and not
              words.                                           the prompt restated, times
                                                               ``max(0, 1 - (words - k) / k)`` past the limit
name          Name a vegetable and say one thing about it.     1 if a listed vegetable is named, else 0
              (four wordings)
============  ===============================================  ==================================================

How an answer is read (version 4, issue 31: a careful reader's judgement, tested by tests/test_lmworld_truth.py):

* Folded to lower-case ASCII: "Brasília" is "brasilia". Names are whole words or phrases, longest first ("bass
  guitar" is one instrument, "sea lion" no lion), in any plural; an item's synonyms and its singular and plural
  are one item ("drum, drums" and "hen, chicken" count once); in a list, a gloss in parentheses is not an item
  ("lions (big cats)" lists one animal). The lists hold what a reader accepts: a capital's other spellings and
  former names of the same city ("Kiev", "Peking"), many items per category.
* A wrong capital is offered only in a sentence about the capital asked for (saying "capital", the country or
  its capital) and not beside its own country: "It is a long flight from London." and "Berlin is the capital of
  Germany." are remarks, not second answers.
* A denied name is neither an answer nor a wrong one: "It is not Sydney, it is Canberra" scores 1, "Blood is red,
  not blue" 1, "The answer is not 12" 0 (the denial in the name's own clause: "not", "isn't", "rather than", ...,
  or "X is not the ...").
* The question's own words are not an answer: the thing a color question asks about is never its colour ("An
  orange is orange." 1, "A violet is purple." 1, "Violets are blue." 0), the arithmetic question's expression
  holds no result ("10 - 5" does not answer 10 - 5), and a copy of the prompt never names an item or a capital.
* Echoing the prompt never earns credit. ``include`` counts a required word only where the answer *uses* it
  (any inflection: "waves", "running", "ran"), not where it only names it: inside a copy of the prompt, inside
  a quotation of one or two words ('uses the words "wave" and "salt"') or right after "word(s)"/"term(s)".
  ``limit`` gives 0 to a tip whose every word that says something comes from the prompt ("Save money.",
  "Staying healthy is 8 words.", the prompt itself).

Version 3 missed these (accents, former names, number words, synonyms and plurals counted twice, the subject
of a color question counted as a second colour, quoted words and restated prompts earning full credit); the
formulas are the same, the reading changed. Most kinds are length-neutral (padding neither helps nor hurts
unless it adds a wrong answer); ``include`` and ``limit`` ask for brevity, where a judge that likes length and
the truth disagree, as they do for real instructions. Pure Python; no model is needed here.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

from adadpo.bench.worlds.smollm2.reading import (
    affirmed,
    category_table,
    entries,
    fold,
    forms,
    inflections,
    mentions,
    negated,
    stem,
    without_prompt,
)
from adadpo.bench.worlds.smollm2.wordlists import (
    CAPITAL_NAMES,
    CAPITALS,
    CATEGORIES,
    COLORS_OF,
    GOALS,
    OTHER_CAPITALS,
    SHADES,
    STOPWORDS,
    TOPICS,
)

#: Canonical names of each category's items (the first name of each entry of :data:`CATEGORIES`).
ITEMS = {c: tuple(dict.fromkeys(e.split("/")[0].replace("_", " ") for e in words.split())) for c, words in CATEGORIES.items()}

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
SINGULAR = {"fruits": "fruit", "animals": "animal", "colors": "color", "vegetables": "vegetable", "sports": "sport",
            "musical instruments": "musical instrument", "birds": "bird", "flowers": "flower", "trees": "tree"}
LIST_TEMPLATES = ("List {n} {x}.", "Name {n} {x}.", "Give me {n} {x}.", "What are {n} {x}? Just list them.")
NAME_TEMPLATES = ("name {a} {x} and say one thing about it.", "which {x} would you recommend to a friend, and why?",
                  "pick {a} {x} and describe it.", "tell me about {a} {x} you like.")
KINDS = ("capital", "arithmetic", "list", "color", "include", "limit", "name")
#: Version of the truth program and templates; part of a world's cache key, so a change rebuilds worlds.
VERSION = 4


@dataclass(frozen=True)
class Task:
    """One prompt and what its truth needs: ``kind`` (see the module table), ``text`` (the user's message) and
    ``params`` (a tuple of strings: the answer key, or the words and limits the answer is checked against)."""

    kind: str
    text: str
    params: tuple[str, ...]

    def key(self) -> tuple[str, tuple[str, ...]]:
        """Identity for disjointness: the kind and what is asked, not the wording."""
        return self.kind, self.params


def _make(kind: str, rng: random.Random) -> Task:
    if kind == "capital":
        country = rng.choice(sorted(CAPITALS))
        return Task(kind, f"What is the capital of {country}?", (country,))
    if kind == "arithmetic":
        op = rng.choice("+-x")
        a, b = rng.randint(2, 20), rng.randint(2, 12)
        if op == "-":
            a, b = max(a, b) + rng.randint(1, 9), min(a, b)
        word = {"+": "+", "-": "-", "x": "times"}[op]
        return Task(kind, f"What is {a} {word} {b}?", (str(a), op, str(b)))
    if kind == "list":
        category, n, template = rng.choice(sorted(ITEMS)), rng.randint(2, 5), rng.randrange(len(LIST_TEMPLATES))
        text = LIST_TEMPLATES[template].format(n=NUMBER_WORDS[n], x=category)
        return Task(kind, text, (category, str(n), str(template)))
    if kind == "color":
        thing = rng.choice(sorted(COLORS_OF))
        return Task(kind, f"What color is {thing}?", (thing,))
    if kind == "include":
        topic = rng.choice(sorted(TOPICS))
        w1, w2 = rng.sample(TOPICS[topic], 2)
        return Task(kind, f'Write one sentence about {topic} that uses the words "{w1}" and "{w2}".', (topic, w1, w2))
    if kind == "limit":
        goal, k = rng.choice(sorted(GOALS)), rng.choice((8, 10, 12, 15, 20))
        return Task(kind, f"Give one tip for {goal} in at most {k} words.", (goal, str(k)))
    if kind == "name":
        category, template = rng.choice(sorted(ITEMS)), rng.randrange(len(NAME_TEMPLATES))
        singular = SINGULAR[category]
        article = "an" if singular[0] in "aeiou" else "a"
        text = NAME_TEMPLATES[template].format(a=article, x=singular)
        return Task(kind, text[0].upper() + text[1:], (category, str(template)))
    raise ValueError(f"kind={kind!r}: expected one of {KINDS}")


def make_tasks(n_train: int, n_eval: int, seed: int, kinds: tuple[str, ...] = KINDS) -> tuple[list[Task], list[Task]]:
    """``n_train`` training and ``n_eval`` held-out tasks, kinds in turn, deterministic in ``seed``.

    Held-out tasks are drawn first and no training task asks what a held-out one asks (same kind and
    parameters), so the split is disjoint; within a split a question may repeat when the lists run out.
    Raises ``ValueError`` when the lists cannot give ``n_eval`` distinct held-out tasks.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"kinds={list(kinds)}: expected a non-empty subset of {list(KINDS)}")
    rng = random.Random(seed)
    held: list[Task] = []
    seen: set = set()
    tries = 0
    while len(held) < n_eval:
        task = _make(kinds[len(held) % len(kinds)], rng)
        tries += 1
        if task.key() not in seen:
            seen.add(task.key())
            held.append(task)
        elif tries > 100 * (n_eval + 10):
            raise ValueError(f"n_eval={n_eval}: the task lists give only {len(held)} distinct held-out tasks")
    train: list[Task] = []
    tries = 0
    while len(train) < n_train:
        task = _make(kinds[len(train) % len(kinds)], rng)
        tries += 1
        if task.key() not in seen:
            train.append(task)
        elif tries > 100 * (n_train + 10):
            raise ValueError(f"n_eval={n_eval}: held-out tasks use up every {kinds[len(train) % len(kinds)]!r} "
                             "question, none is left for training")
    return train, held


# ----------------------------------------------------------------------------------------------- the truth

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")


def words(text: str) -> list[str]:
    """The answer's words (letters, digits and apostrophes), as the judge and the length measure count them."""
    return re.findall(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?", text)


# capital -------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _capital_table(country: str) -> tuple[tuple[str, str | None], ...]:
    names = [(fold(CAPITALS[c]), c) for c in CAPITALS]
    names += [(n, c) for c, extra in CAPITAL_NAMES.items() for n, _ in entries(extra.split("/"))]
    names += [(n, canonical) for n, canonical in entries(OTHER_CAPITALS)]
    return tuple((n, "right" if c == country else c) for n, c in names)


def _capital(country: str, text: str) -> float:
    """A wrong capital is a second answer only where it is offered as one: in a sentence that says "capital" or
    names the country asked about or its capital, and not beside its own country ("Berlin is the capital of
    Germany", "Berlin (Germany)"). "Paris is the capital. It is near London." names one capital."""
    table = _capital_table(country)
    named = affirmed(text, table)
    asked = rf"\bcapital|\b{re.escape(fold(country))}\b|" + "|".join(
        rf"\b{re.escape(n)}\b" for n, c in table if c == "right")
    for s, e, c in mentions(text, table):
        sentence = _sentence_of(text, s, e)
        own = c in CAPITALS and re.search(rf"\b{re.escape(fold(c))}\b", sentence)
        if c != "right" and (own or not re.search(asked, sentence)):
            named.discard(c)
    return (0.5 if named - {"right"} else 1.0) if "right" in named else 0.0


def _sentence_of(text: str, start: int, end: int) -> str:
    """The sentence holding ``text[start:end]``."""
    head, tail = text[:start], text[end:]
    return re.split(r"[.;!?\n]", head)[-1] + text[start:end] + re.split(r"[.;!?\n]", tail)[0]


# arithmetic -----------------------------------------------------------------------------------------------

_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
         "seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_BELOW_100 = rf"(?:(?:{'|'.join(_TENS)})(?:[\s-]+(?:{'|'.join(_UNITS[1:10])}))?|{'|'.join(_UNITS[::-1])})"
_BELOW_1000 = rf"(?:(?:{'|'.join(_UNITS[1:10])}|a)\s+hundred(?:(?:\s+and)?\s+{_BELOW_100})?|{_BELOW_100})"
#: A number in words, as English writes one: "thirty-five", "one hundred and ninety-two" (not "five and seven").
_SPELLED = re.compile(rf"\b{_BELOW_1000}(?:\s+thousand(?:(?:\s+and)?\s+{_BELOW_1000})?)?\b")
_COUNTED = re.compile(r"\s+(?:numbers|values|terms|operands|digits|integers|of them)\b")
_OPERATORS = {"+": r"\+|plus|and|added to", "-": r"-|minus|take away|less|and", "x": r"x|\*|times|multiplied by|by|and"}


def _spelled_value(phrase: str) -> int:
    total = current = 0
    for w in re.split(r"[\s-]+", phrase):
        if w in _UNITS:
            current += _UNITS.index(w)
        elif w == "a":
            current = 1
        elif w in _TENS:
            current += 20 + 10 * _TENS.index(w)
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w == "thousand":
            total, current = total + max(current, 1) * 1000, 0
    return total + current


def _digits(text: str, result: int) -> str:
    """``text`` with spelled numbers written in digits ("thirty-five" -> "35"). A lone "one" stays a word unless
    1 is the result (it is mostly a pronoun), and so do a count of the operands ("the two numbers") and number
    words hyphened to a number they do not compose with ("one-twenty", a time)."""
    def repl(m: re.Match) -> str:
        joined = text[m.start() - 1:m.start()] == "-" or text[m.end():m.end() + 1] == "-"
        if (m.group(0) == "one" and result != 1) or _COUNTED.match(text, m.end()) or joined:
            return m.group(0)
        return str(_spelled_value(m.group(0)))
    return _SPELLED.sub(repl, text)


def _arithmetic_quality(a: int, op: str, b: int, text: str) -> float:
    result = {"+": a + b, "-": a - b, "x": a * b}[op]
    text = _digits(text, result)
    pairs = [(a, _OPERATORS[op], b), (b, _OPERATORS[op], a)] if op in "+x" else [(a, _OPERATORS[op], b), (b, "from", a)]
    for x, ops, y in pairs:  # the question's own expression is no answer: "10 - 5", "5 from 10" do not say 5
        text = re.sub(rf"(?<![\w.]){x}\s*(?:{ops})\s*{y}(?!\w|\.\d)", " ", text)
    numbers = {float(m.group(0)) for m in _NUMBER.finditer(text) if not negated(text, m.start(), m.end())}
    if result not in numbers:
        return 0.0
    return 1.0 if numbers <= {float(a), float(b), float(result)} else 0.5


# color ----------------------------------------------------------------------------------------------------

_LIGHT = re.compile(r"(?:(?:\s*,\s*|\s+(?:and|or)\s+)[a-z]+){0,3}\s+(?:light|wavelengths?|rays?)\b")
_DETERMINERS = frozenset("a an the this that these those each every ripe fresh my your its one their".split())


def _color(thing: str, text: str) -> float:
    """The subject's own words are not an answer: in "An orange is orange." the first "orange" is the fruit (it
    follows a determiner), "violets" (a plural) is the flower, never a colour, and a subject named without an
    article ("ivory") is never its own colour. A wrong colour said of light ("absorbs red and blue light") is no
    second answer."""
    right = {COLORS_OF[thing]} | set(SHADES.get(COLORS_OF[thing], "").replace("_", " ").split())
    subject = set(fold(thing).split())
    plurals = {f for w in subject for f in forms(w)[1:]}
    bare = thing.split()[0] not in ("a", "an", "the")  # "ivory": every "ivory" may be the thing itself
    named = set()
    for s, e, c in mentions(text, category_table("colors")):
        said, before = text[s:e], (text[:s].split() or [""])[-1]
        if said in plurals or said in subject and (bare or before in _DETERMINERS or text.startswith("'s", e)):
            continue  # the thing asked about, not its colour
        if c not in right and _LIGHT.match(text, e):
            continue  # "absorbs red and blue light": colours of light, not of the thing
        if not negated(text, s, e):
            named.add(c)
    return (0.5 if named - right else 1.0) if named & right else 0.0


# include and limit ----------------------------------------------------------------------------------------

_SHORT_QUOTE = re.compile(r'"\s*[^"\n]{0,30}?"|(?<![a-z])\'[^\'\n]{0,30}?\'(?![a-z])')


def _used(text: str, required: str, prompt: str) -> bool:
    """The answer uses ``required`` (an inflection of it, :func:`inflections`) outside what only names it: a
    copy of the prompt, a quotation of one or two words ('the words "wave" and "salt"', '"ball"'), or the words
    written after "word(s)"/"term(s)"."""
    text = without_prompt(text, prompt)
    text = _SHORT_QUOTE.sub(lambda m: " " if len(m.group(0).split()) <= 2 else m.group(0), text)
    alts = "|".join(re.escape(f) for f in inflections(required))
    text = re.sub(rf"\b(?:words?|terms?)\s+(?:like\s+|such as\s+)?(?:[a-z]+(?:\s*(?:,|and|&)\s*)?){{1,2}}",
                  lambda m: " " if re.search(rf"\b(?:{alts})\b", m.group(0)) else m.group(0), text)
    return re.search(rf"(?<![a-z0-9])(?:{alts})(?![a-z0-9])", text) is not None


def _sentences(text: str) -> int:
    """Sentences: runs of text ended by ``.``, ``!`` or ``?``, plus an unfinished tail; at least 1."""
    parts = [p for p in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if re.search(r"[A-Za-z]", p)]
    return max(1, len(parts))


def restates(text: str, prompt: str) -> bool:
    """Every word of the answer that says something (not in :data:`STOPWORDS`, not a number) comes from the
    prompt: "Sleep better.", "Staying healthy is 8 words.", the prompt itself. Such an answer is no tip."""
    own = {stem(w) for w in re.findall(r"[a-z]+", fold(prompt))}
    said = [w for w in re.findall(r"[a-z]+(?:'[a-z]+)?", text) if w not in STOPWORDS]
    return all(stem(w) in own for w in said)


def _on_topic(text: str, stems: tuple[str, ...]) -> bool:
    """Some word of ``text`` starts with one of ``stems``: ``sleep`` finds "sleeping", ``eat out`` "eat out"."""
    return any(re.search(rf"(?<![a-z0-9]){re.escape(stem)}", text) for stem in stems)


def quality(task: Task, answer: str) -> float:
    """True quality of ``answer`` to ``task`` in ``[0, 1]`` (formulas in the module table). Empty: 0.

    The answer is read folded (:func:`fold`); what the prompt itself says never earns credit (a copy of it is
    blanked before any match); a denied name ("not Sydney") is neither an answer nor a wrong one."""
    if not answer.strip():
        return 0.0
    kind, p, text = task.kind, task.params, fold(answer)
    if kind == "capital":
        return _capital(p[0], without_prompt(text, task.text))
    if kind == "arithmetic":
        return _arithmetic_quality(int(p[0]), p[1], int(p[2]), text)
    if kind == "list":
        listed = re.sub(r"\([^()]*\)", " ", without_prompt(text, task.text))  # "lions (big cats)": a gloss
        v = len({c for _, _, c in mentions(listed, category_table(p[0]))})
        n = int(p[1])
        return min(v, n) / n * n / max(v, n) if v else 0.0
    if kind == "color":
        return _color(p[0], without_prompt(text, task.text))
    if kind == "include":
        used = sum(_used(text, w, task.text) for w in p[1:]) / len(p[1:])
        return used / _sentences(answer)
    if kind == "limit":
        goal, k, own = p[0], int(p[1]), without_prompt(text, task.text)  # the goal's words in a copy don't count
        if restates(own, task.text) or not _on_topic(own, GOALS[goal]):
            return 0.0
        n = len(words(answer))
        return 1.0 if n <= k else max(0.0, 1.0 - (n - k) / k)
    if kind == "name":
        return 1.0 if mentions(without_prompt(text, task.text), category_table(p[0])) else 0.0
    raise ValueError(f"task kind={kind!r}: expected one of {KINDS}")
