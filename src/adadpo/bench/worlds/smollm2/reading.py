"""Reading an answer the way the real-model world's truth does (:mod:`adadpo.bench.worlds.smollm2.tasks`).

An answer is folded to lower-case ASCII (:func:`fold`); names from the word lists are found as whole words or
phrases, longest first, in their plural forms (:func:`mentions`); a name in a clause that denies it is set aside
(:func:`negated`); a copy of the prompt is blanked out before anything is matched (:func:`without_prompt`).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from adadpo.bench.worlds.smollm2.wordlists import CATEGORIES, IRREGULAR_FORMS, IRREGULAR_PLURALS, NOT_ITEMS

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00d7": "x", "\u2212": "-",
                         "\u2013": "-", "\u2014": " - ", "\u00b4": "'", "`": "'"})


def fold(text: str) -> str:
    """``text`` in lower-case ASCII: accents dropped ("Brasília" -> "brasilia"), curly quotes made straight, "×"
    and dashes made "x" and "-"; what every match of the truth reads."""
    text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def forms(name: str) -> list[str]:
    """``name`` and its English plurals (of its last word): ``+s``, ``+es``, ``y -> ies``, ``f``/``fe -> ves``,
    and the irregular ones of :data:`IRREGULAR_PLURALS` ("mice")."""
    p = name.lower()
    out = [p, p + "s", p + "es"]
    if p.endswith("y"):
        out.append(p[:-1] + "ies")
    if p.endswith("fe"):
        out.append(p[:-2] + "ves")
    elif p.endswith("f"):
        out.append(p[:-1] + "ves")
    last = p.split()[-1]
    if last in IRREGULAR_PLURALS:
        out.append(p[: len(p) - len(last)] + IRREGULAR_PLURALS[last])
    return out


def inflections(word: str) -> list[str]:
    """A required word's forms that use it (:func:`forms`, ``-ing``, ``-ed``, with a dropped ``e`` or a doubled
    last consonant: "waving", "running"), not words derived from it ("salty" does not use "salt")."""
    out = forms(word) + [word + "ing", word + "ed"] + list(IRREGULAR_FORMS.get(word, ()))
    if word.endswith("e"):
        out += [word[:-1] + "ing", word + "d"]
    if len(word) >= 3 and word[-1] not in "aeiouwxy" and word[-2] in "aeiou" and word[-3] not in "aeiou":
        out += [word + word[-1] + "ing", word + word[-1] + "ed"]
    if word.endswith("y"):
        out.append(word[:-1] + "ied")
    return out


def entries(written) -> list[tuple[str, str]]:
    """``(name, canonical)`` for word-list entries written ``"name"`` or ``"name/synonym"`` (``_`` is a space)."""
    out = []
    for entry in written:
        names = [n.replace("_", " ") for n in entry.split("/") if n]
        out += [(n, names[0]) for n in names]
    return out


@functools.lru_cache(maxsize=None)
def matcher(table: tuple[tuple[str, str | None], ...]) -> tuple[re.Pattern, dict]:
    """A regex finding the names of ``table`` (``(name, canonical)``; canonical ``None`` marks a name that only
    hides the items inside it) as whole words, longest first, and the map from a found name to its canonical."""
    lookup: dict[str, str | None] = {}
    for name, canonical in table:
        lookup.setdefault(re.sub(r"[\s-]+", " ", name), canonical)
    alts = sorted(lookup, key=len, reverse=True)
    body = "|".join(r"[\s-]+".join(re.escape(part) for part in re.split(r"[\s-]+", a)) for a in alts)
    return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])"), lookup


@functools.lru_cache(maxsize=None)
def category_table(category: str) -> tuple[tuple[str, str | None], ...]:
    pairs = [(form, canonical) for name, canonical in entries(CATEGORIES[category].split()) for form in forms(name)]
    known = {f for f, _ in pairs}
    return tuple(pairs + [(n, None) for n in NOT_ITEMS.get(category, ()) if n not in known])


def mentions(text: str, table: tuple[tuple[str, str | None], ...]) -> list[tuple[int, int, str]]:
    """``(start, end, canonical)`` of each name of ``table`` in the folded ``text``, left to right, longest first:
    "bass guitar" is one instrument, and "sea lion" hides no lion."""
    pattern, lookup = matcher(table)
    found = ((m.start(), m.end(), lookup[re.sub(r"[\s-]+", " ", m.group(0))]) for m in pattern.finditer(text))
    return [f for f in found if f[2] is not None]


_CLAUSE = re.compile(r"[,.;:!?()\n]|\bbut\b|\bit'?s\b|\bit is\b|\bthe answer is\b")
_NEGATION = re.compile(r"\b(?:not|never|no|nor|neither|isn't|aren't|wasn't|weren't|rather than|instead of|unlike|"
                       r"except)\b")
_DENIED_AFTER = re.compile(r"\s*(?:is|are|was|were)(?:\s+not|n't)\s+(?:the|a|an|its|correct|right)\b")


def negated(text: str, start: int, end: int) -> bool:
    """The mention ``text[start:end]`` is denied: "not Sydney", "Sydney isn't the capital", "rather than blue".
    The denial must sit in the mention's own clause, within its four preceding words."""
    head = text[max(0, start - 60):start]
    cuts = [m.end() for m in _CLAUSE.finditer(head)]
    clause = " ".join(head[cuts[-1] if cuts else 0:].split()[-4:])
    return bool(_NEGATION.search(clause)) or bool(_DENIED_AFTER.match(text, end))


def without_prompt(text: str, prompt: str) -> str:
    """``text`` with every verbatim copy of the prompt (folded, spaces free, end punctuation optional) blanked out."""
    core = fold(prompt).strip().rstrip(".?!")
    if not core:
        return text
    pattern = r"\s+".join(re.escape(w) for w in core.split()) + r"[.?!]?"
    return re.sub(pattern, " ", text)


def affirmed(text: str, table: tuple[tuple[str, str | None], ...]) -> set[str]:
    """Canonical names of ``table`` that ``text`` names and does not deny."""
    return {c for s, e, c in mentions(text, table) if not negated(text, s, e)}


def stem(word: str) -> str:
    """A crude stem for comparing an answer's words with its prompt's ("sleeping", "sleep" -> "sleep")."""
    for _ in range(2):
        for suffix in ("ies", "ing", "ed", "es", "s", "ly"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
                break
    word = word[:-1] if word.endswith("e") else word
    return word[:-1] if len(word) > 3 and word[-1] == word[-2] else word
