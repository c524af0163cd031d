"""Prompts with a checkable truth, and the program that scores an answer against it.

Every prompt comes from a template and small word lists written here, so the truth is known without a
judge model (nine categories of things, ten goals, forty colored things). Seven kinds, chosen so that a
135M-parameter instruct model's own samples vary in true quality and in length:

============  ===============================================  ==================================================
kind          example                                          true quality ``q`` in [0, 1]
============  ===============================================  ==================================================
capital       What is the capital of Peru?                     1 if the capital is named and no other listed
                                                               capital is; 0.5 if a wrong one is named too; else 0
arithmetic    What is 7 + 5?                                   1 if the result is the only number besides the
                                                               operands; 0.5 if other numbers appear too; else 0
list          List three fruits. (four wordings)               ``min(v, n) / n * n / max(v, n)`` for ``v`` distinct
                                                               valid items (recall, and precision against listing
                                                               more than asked)
color         What color is grass?                             1 if the color is named and no other listed color
                                                               is; 0.5 if another is named too; else 0
include       Write one sentence about the sea that uses the   share of the required words used, times
              words "wave" and "salt".                         ``1 / sentences``
limit         Give one tip for sleeping better in at most 12   on topic (a word starts with a topic stem), times
              words.                                           ``max(0, 1 - (words - k) / k)`` past the limit
name          Name a vegetable and say one thing about it.     1 if a listed vegetable is named, else 0
              (four wordings)
============  ===============================================  ==================================================

Most kinds are length-neutral (padding neither helps nor hurts unless it adds a wrong answer); ``include``
and ``limit`` ask for brevity, where a judge that likes length and the truth disagree, as they do
for real instructions. Pure Python; no model is needed here.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens", "Peru": "Lima",
    "Canada": "Ottawa", "Australia": "Canberra", "Brazil": "Brasilia", "Argentina": "Buenos Aires",
    "Mexico": "Mexico City", "India": "New Delhi", "Kenya": "Nairobi", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Poland": "Warsaw", "Portugal": "Lisbon", "Ireland": "Dublin", "Austria": "Vienna",
    "Hungary": "Budapest", "Turkey": "Ankara", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Cuba": "Havana",
    "Chile": "Santiago", "Colombia": "Bogota", "Denmark": "Copenhagen", "Belgium": "Brussels",
    "Netherlands": "Amsterdam", "Switzerland": "Bern", "Iran": "Tehran", "Iraq": "Baghdad",
    "South Korea": "Seoul", "Indonesia": "Jakarta", "Nigeria": "Abuja", "Morocco": "Rabat", "Ukraine": "Kyiv",
    "Czech Republic": "Prague", "Romania": "Bucharest", "Philippines": "Manila", "Venezuela": "Caracas",
    "Scotland": "Edinburgh", "Ethiopia": "Addis Ababa",
}

CATEGORIES = {
    "fruits": "apple banana orange grape mango pear peach cherry strawberry lemon lime kiwi pineapple "
              "watermelon melon plum apricot blueberry raspberry coconut papaya fig pomegranate grapefruit "
              "avocado blackberry cranberry nectarine tangerine date",
    "animals": "dog cat horse cow pig sheep goat lion tiger elephant bear wolf fox rabbit deer monkey giraffe "
               "zebra kangaroo panda mouse rat camel dolphin whale shark eagle owl snake frog turtle duck "
               "chicken penguin hippo rhino squirrel leopard cheetah koala",
    "colors": "red blue green yellow orange purple pink black white brown gray grey violet indigo turquoise "
              "beige maroon navy teal cyan magenta gold silver",
    "vegetables": "carrot potato tomato onion garlic broccoli cabbage lettuce spinach pepper cucumber pea "
                  "bean corn celery cauliflower zucchini eggplant pumpkin radish beet kale asparagus leek "
                  "turnip",
    "sports": "soccer football basketball tennis baseball golf hockey cricket rugby volleyball swimming "
              "cycling boxing running skiing badminton wrestling surfing rowing fencing",
    "musical instruments": "piano guitar violin drum drums flute trumpet saxophone cello harp clarinet "
                           "trombone ukulele banjo accordion harmonica oboe bass organ tuba",
    "birds": "eagle owl sparrow robin pigeon crow parrot penguin duck swan goose hawk falcon flamingo peacock "
             "ostrich hummingbird woodpecker seagull chicken turkey raven pelican stork heron",
    "flowers": "rose tulip daisy lily sunflower orchid daffodil lavender jasmine violet peony carnation "
               "marigold poppy iris lotus dandelion hibiscus magnolia chrysanthemum",
    "trees": "oak maple pine birch willow cedar elm ash spruce fir palm cherry apple redwood sequoia cypress "
             "beech poplar baobab eucalyptus bamboo mahogany teak",
}
#: Items of each category (words or phrases; their plurals also count, see :func:`_forms`).
ITEMS = {c: tuple(words.split()) for c, words in CATEGORIES.items()}
#: Names that contain an item but are not one ("Golden Raspberry" is an award, "Big Apple" a city): an item
#: counts only where it is not part of one of these.
NOT_ITEMS = ("golden raspberry", "big apple", "apple inc", "apple watch", "apple music", "orange county",
             "black pepper", "hot dog", "hot dogs", "sea lion", "sea lions", "pine nut", "pine nuts", "pineapple",
             "pineapples")

COLORS_OF = {
    "grass": "green", "the sky on a clear day": "blue", "snow": "white", "coal": "black", "a banana": "yellow",
    "a ripe tomato": "red", "a lemon": "yellow", "milk": "white", "a carrot": "orange", "chocolate": "brown",
    "a strawberry": "red", "the sun in a child's drawing": "yellow", "a lime": "green", "an orange": "orange",
    "a crow": "black", "a polar bear": "white", "an eggplant": "purple", "a fire truck": "red",
    "a cucumber": "green", "the sea": "blue", "a flamingo": "pink", "blood": "red", "a pumpkin": "orange",
    "an emerald": "green", "a sapphire": "blue", "a ruby": "red", "charcoal": "black", "ivory": "white",
    "a school bus in the United States": "yellow", "a violet": "purple", "a tree trunk": "brown",
    "a blueberry": "blue", "a pig in a cartoon": "pink", "a canary": "yellow", "a swan": "white",
    "coffee without milk": "brown", "a raven": "black", "a frog": "green", "a stop sign": "red",
    "a cloud on a sunny day": "white",
}

TOPICS = {  # topic -> words a sentence about it might use as required words
    "the sea": ("wave", "salt", "ship", "fish", "blue", "sand"),
    "a forest": ("tree", "green", "bird", "leaf", "quiet", "path"),
    "winter": ("snow", "cold", "white", "ice", "warm", "fire"),
    "a city": ("street", "car", "light", "people", "night", "busy"),
    "breakfast": ("egg", "bread", "coffee", "milk", "morning", "sweet"),
    "a dog": ("run", "ball", "happy", "friend", "bark", "park"),
    "the moon": ("night", "light", "sky", "bright", "star", "round"),
    "summer": ("sun", "hot", "beach", "swim", "day", "ice"),
}

GOALS = {  # goal -> stems of words that show a tip is on topic (a word starting with a stem counts)
    "sleeping better": ("sleep", "bed", "night", "caffein", "coffee", "tea", "screen", "phone", "dark", "routine",
                        "rest", "nap", "tired", "relax", "alarm", "pillow", "mattress", "dream", "evening",
                        "morning", "wake", "quiet", "cool", "room", "schedule", "hour", "meditat", "breath"),
    "saving money": ("money", "sav", "budget", "spend", "buy", "cost", "cash", "price", "bank", "expens", "pay",
                     "dollar", "cheap", "coupon", "discount", "debt", "income", "purchas", "shop", "track",
                     "invest", "bill", "account", "financ", "afford"),
    "staying healthy": ("health", "exercis", "water", "eat", "food", "sleep", "walk", "vegetable", "fruit",
                        "diet", "drink", "hydrat", "active", "workout", "fit", "nutri", "meal", "rest", "stress",
                        "doctor", "move", "run", "sugar", "body", "weight"),
    "learning a language": ("word", "practic", "speak", "language", "read", "listen", "vocabular", "daily",
                            "native", "learn", "grammar", "convers", "app", "phrase", "lesson", "class",
                            "talk", "immers", "flashcard", "tutor", "study", "fluent", "translat", "write"),
    "studying for an exam": ("study", "studi", "exam", "note", "review", "practic", "read", "sleep", "break",
                             "test", "question", "learn", "plan", "schedul", "focus", "revis", "material",
                             "quiz", "memor", "subject", "topic", "class", "book", "time"),
    "keeping a plant alive": ("water", "sun", "light", "soil", "plant", "pot", "leaves", "leaf", "fertiliz",
                              "sunlight", "root", "drain", "window", "prun", "grow", "moist", "dry", "feed",
                              "humid", "shade", "garden"),
    "writing clearly": ("sentence", "word", "short", "simple", "clear", "read", "write", "writ", "edit",
                        "paragraph", "concise", "jargon", "plain", "reader", "idea", "point", "grammar",
                        "proofread", "draft", "revis", "outline", "active voice"),
    "cooking pasta": ("water", "salt", "boil", "pasta", "minute", "sauce", "pot", "cook", "drain", "taste",
                      "al dente", "noodle", "spaghetti", "stir", "oil", "heat", "time", "timer"),
    "making friends": ("friend", "people", "talk", "club", "join", "group", "smil", "listen", "conversation",
                       "meet", "social", "kind", "hobb", "event", "class", "volunteer", "ask", "interest"),
    "saving energy at home": ("energy", "light", "lamp", "bulb", "led", "turn", "switch", "power", "heat",
                              "thermostat", "unplug", "electric", "appliance", "insulat", "window", "water",
                              "off", "solar", "bill", "temperature"),
}

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
SINGULAR = {"fruits": "fruit", "animals": "animal", "colors": "color", "vegetables": "vegetable", "sports": "sport",
            "musical instruments": "musical instrument", "birds": "bird", "flowers": "flower", "trees": "tree"}
LIST_TEMPLATES = ("List {n} {x}.", "Name {n} {x}.", "Give me {n} {x}.", "What are {n} {x}? Just list them.")
NAME_TEMPLATES = ("name {a} {x} and say one thing about it.", "which {x} would you recommend to a friend, and why?",
                  "pick {a} {x} and describe it.", "tell me about {a} {x} you like.")
KINDS = ("capital", "arithmetic", "list", "color", "include", "limit", "name")
#: Version of the truth program and templates; part of a world's cache key, so a change rebuilds worlds.
VERSION = 3


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
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def words(text: str) -> list[str]:
    """The answer's words (letters, digits and apostrophes), as the judge and the length measure count them."""
    return re.findall(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?", text)


def _forms(phrase: str) -> list[str]:
    """``phrase`` and its regular English plurals: ``+s``, ``+es``, ``y -> ies``, ``f``/``fe -> ves``."""
    p = phrase.lower()
    forms = [p, p + "s", p + "es"]
    if p.endswith("y"):
        forms.append(p[:-1] + "ies")
    if p.endswith("fe"):
        forms.append(p[:-2] + "ves")
    elif p.endswith("f"):
        forms.append(p[:-1] + "ves")
    return forms


def _has(text: str, phrase: str) -> bool:
    """Whole-word, case-insensitive match of ``phrase`` or one of its plurals (:func:`_forms`), outside the
    names of :data:`NOT_ITEMS` that merely contain it."""
    alternatives = "|".join(re.escape(f) for f in _forms(phrase))
    text = text.lower()
    for name in NOT_ITEMS:
        if name != phrase.lower() and phrase.lower() in name:
            text = re.sub(rf"\b{re.escape(name)}\b", " ", text)
    return re.search(rf"\b(?:{alternatives})\b", text) is not None


def _on_topic(text: str, stems: tuple[str, ...]) -> bool:
    """Some word of ``text`` starts with one of ``stems`` (case-insensitive): ``sleep`` finds "sleeping"."""
    lower = text.lower()
    return any(re.search(rf"\b{re.escape(stem)}", lower) for stem in stems)


def _sentences(text: str) -> int:
    """Sentences: runs of text ended by ``.``, ``!`` or ``?``, plus an unfinished tail; at least 1."""
    parts = [p for p in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if re.search(r"[A-Za-z]", p)]
    return max(1, len(parts))


def _arithmetic(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "x": a * b}[op]


def quality(task: Task, answer: str) -> float:
    """True quality of ``answer`` to ``task`` in ``[0, 1]`` (formulas in the module table). Empty: 0."""
    if not answer.strip():
        return 0.0
    kind, p = task.kind, task.params
    if kind == "capital":
        right = CAPITALS[p[0]]
        wrong = any(_has(answer, c) for c in CAPITALS.values() if c != right)
        return (0.5 if wrong else 1.0) if _has(answer, right) else 0.0
    if kind == "arithmetic":
        a, op, b = int(p[0]), p[1], int(p[2])
        result = _arithmetic(a, op, b)
        numbers = {float(x) for x in _NUMBER.findall(answer)}
        if result not in numbers:
            return 0.0
        return 1.0 if numbers <= {float(a), float(b), float(result)} else 0.5
    if kind == "list":
        category, n = p[0], int(p[1])
        v = sum(_has(answer, item) for item in ITEMS[category])
        return min(v, n) / n * n / max(v, n) if v else 0.0
    if kind == "color":
        right = COLORS_OF[p[0]]
        wrong = any(_has(answer, c) for c in ITEMS["colors"] if c != right)
        return (0.5 if wrong else 1.0) if _has(answer, right) else 0.0
    if kind == "include":
        used = sum(_has(answer, w) for w in p[1:]) / len(p[1:])
        return used / _sentences(answer)
    if kind == "limit":
        goal, k = p[0], int(p[1])
        if not _on_topic(answer, GOALS[goal]):
            return 0.0
        n = len(words(answer))
        return 1.0 if n <= k else max(0.0, 1.0 - (n - k) / k)
    if kind == "name":
        return 1.0 if any(_has(answer, item) for item in ITEMS[p[0]]) else 0.0
    raise ValueError(f"task kind={kind!r}: expected one of {KINDS}")
