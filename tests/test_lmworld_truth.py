"""The real-model world's truth against a careful reader (issue 31).

Each table holds answers to the world's own prompts (their exact templates), judged by hand under the kind's
stated rule (the module table of ``adadpo.bench.worlds.smollm2.tasks``): right and wrong answers, other
spellings and former names, number words, echoes of the prompt, one-word and repeated answers, answers that
name the question's own words, items and tips the first word lists did not hold, singular/plural duplicates and
denials. Answers marked ``# SmolLM2`` are the shipped world's own samples. Each score is what a reader gives
under the rule, written before the truth was changed to meet it, never read off the program. Below the tables,
the same classes over every generated prompt, and two properties. Pure Python: no model.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adadpo.bench.worlds.smollm2.tasks import (
    CAPITALS,
    COLORS_OF,
    ITEMS,
    LIST_TEMPLATES,
    NAME_TEMPLATES,
    NUMBER_WORDS,
    SINGULAR,
    TOPICS,
    Task,
    make_tasks,
    quality,
)


def capital(country: str) -> Task:
    return Task("capital", f"What is the capital of {country}?", (country,))


def arithmetic(a: int, op: str, b: int) -> Task:
    return Task("arithmetic", f"What is {a} {'times' if op == 'x' else op} {b}?", (str(a), op, str(b)))


def listing(category: str, n: int, template: int = 0) -> Task:
    return Task("list", LIST_TEMPLATES[template].format(n=NUMBER_WORDS[n], x=category), (category, str(n), str(template)))


def color(thing: str) -> Task:
    return Task("color", f"What color is {thing}?", (thing,))


def include(topic: str, w1: str, w2: str) -> Task:
    return Task("include", f'Write one sentence about {topic} that uses the words "{w1}" and "{w2}".', (topic, w1, w2))


def limit(goal: str, k: int) -> Task:
    return Task("limit", f"Give one tip for {goal} in at most {k} words.", (goal, str(k)))


def name(category: str, template: int = 0) -> Task:
    singular = SINGULAR[category]
    text = NAME_TEMPLATES[template].format(a="an" if singular[0] in "aeiou" else "a", x=singular)
    return Task("name", text[0].upper() + text[1:], (category, str(template)))


CAPITAL = [
    (capital("Brazil"), "The capital of Brazil is Brasília.", 1.0),
    (capital("Brazil"), "Brasilia", 1.0),
    (capital("Brazil"), "The capital of Brazil is Rio de Janeiro.", 0.0),  # a former capital is no answer
    (capital("Brazil"), "Brasília; Rio de Janeiro was the capital until 1960.", 1.0),
    (capital("Ukraine"), "Kiev.", 1.0),  # the former English name
    (capital("Ukraine"), "The capital of Ukraine is Kyiv.", 1.0),
    (capital("China"), "Peking", 1.0),
    (capital("Colombia"), "Bogotá is the capital.", 1.0),
    (capital("Czech Republic"), "Praha (Prague).", 1.0),
    (capital("Mexico"), "Ciudad de México.", 1.0),
    (capital("Mexico"), "Mexico.", 0.0),  # the country's own name
    (capital("Switzerland"), "Bern (also spelled Berne).", 1.0),
    (capital("India"), "Delhi", 1.0),
    (capital("India"), "The capital of India is called Mumbai.", 0.0),  # SmolLM2
    (capital("Australia"), "It is not Sydney, it is Canberra.", 1.0),
    (capital("Australia"), "The capital of Australia is Sydney.", 0.0),
    (capital("Australia"), "Not Canberra.", 0.0),
    (capital("Canada"), "The capital of Canada is Ottawa, not Toronto.", 1.0),
    (capital("Turkey"), "The capital of Turkey is Istanbul.", 0.0),  # SmolLM2
    (capital("Turkey"), "Ankara, although Istanbul is the largest city.", 1.0),
    (capital("France"), "Paris or Berlin, I am not sure.", 0.5),
    (capital("France"), "Paris, not London.", 1.0),
    (capital("France"), "Berlin is the capital of France.", 0.0),
    (capital("France"), "Paris is the capital of France, and Berlin is the capital of Germany.", 1.0),
    (capital("Germany"), "Berlin is not the capital of Germany.", 0.0),  # denied
    (capital("France"), "Paris, Paris, Paris.", 1.0),
    (capital("France"), "What is the capital of France?", 0.0),  # echo
    (capital("Iran"), "The capital of Iran is known as Ashgabat.", 0.0),  # SmolLM2
    (capital("Kenya"), "I'm sorry for any confusion. The capital of Kenya is Jubba, but as a joke it is often "
                       "shortened to just \"KENYA\".", 0.0),  # SmolLM2
    (capital("Vietnam"), "The capital of Vietnam is Hanoi, a city in the Southeast Asia region bordering China, "
                         "the United States, and the Federated States of China.", 1.0),  # SmolLM2
    (capital("Nigeria"), "Abuja replaced Lagos in 1991.", 1.0),
    (capital("Peru"), "Lima or London.", 0.5),
    (capital("Peru"), "The capital of Peru is Lima. It is a long flight from London.", 1.0),  # a remark
    (capital("Peru"), "Lima. Some say the capital is Quito.", 0.5),
]

ARITHMETIC = [
    (arithmetic(7, "x", 5), "7 times 5 is thirty-five.", 1.0),
    (arithmetic(7, "x", 5), "Thirty five.", 1.0),
    (arithmetic(7, "x", 5), "35", 1.0),
    (arithmetic(7, "x", 5), "7 times 5 is 36.", 0.0),
    (arithmetic(7, "+", 5), "twelve", 1.0),
    (arithmetic(7, "+", 5), "Seven plus five equals twelve.", 1.0),
    (arithmetic(7, "+", 5), "What is 7 + 5?", 0.0),  # echo
    (arithmetic(7, "+", 5), "It is not 13, it is 12.", 1.0),
    (arithmetic(7, "+", 5), "The answer is 12, or maybe 13.", 0.5),
    (arithmetic(7, "+", 5), "12. 12. 12.", 1.0),
    (arithmetic(7, "+", 5), "To find the sum of the two numbers, add them: 7 + 5 = 12.", 1.0),
    (arithmetic(10, "-", 5), "What is 10 - 5?", 0.0),  # the echo holds the result as an operand
    (arithmetic(10, "-", 5), "10 - 5", 0.0),
    (arithmetic(10, "-", 5), "10 - 5 = 5", 1.0),
    (arithmetic(10, "-", 5), "Five.", 1.0),
    (arithmetic(6, "-", 3), "Six minus three.", 0.0),  # the question in words
    (arithmetic(10, "-", 5), "Subtract 5 from 10.", 0.0),
    (arithmetic(10, "-", 5), "The difference between 10 and 5 is 5.", 1.0),
    (arithmetic(7, "x", 5), "Multiply 7 by 5 to get 35.", 1.0),
    (arithmetic(7, "x", 5), "The result is 35, since 7 x 5 = 35 and 5 x 7 = 35.", 1.0),
    (arithmetic(6, "-", 3), "Six minus three is three.", 1.0),
    (arithmetic(20, "-", 10), "20 minus 10 is 10.", 1.0),
    (arithmetic(12, "x", 9), "12 * 9 = 108.", 1.0),  # SmolLM2
    (arithmetic(10, "x", 10), "10 × 10 = 100.", 1.0),
    (arithmetic(16, "x", 12), "One hundred and ninety-two.", 1.0),
    (arithmetic(4, "x", 3), "four times three is twelve", 1.0),
    (arithmetic(5, "+", 7), "Five and seven.", 0.0),  # two numbers, not twelve
    (arithmetic(10, "x", 10), "A hundred.", 1.0),
    (arithmetic(19, "+", 11), "Thirty, not twenty-nine.", 1.0),
    (arithmetic(10, "x", 10), "10 times 10 is a simple mathematical operation that is equivalent to 10 times itself "
                              "(10).", 0.0),  # SmolLM2
    (arithmetic(14, "+", 8), "14 + 8 is 12.", 0.0),  # SmolLM2
    (arithmetic(18, "+", 11), "18 + 11 = 20, but consider this: 11 + 18 = 29.", 0.5),  # SmolLM2
    (arithmetic(2, "+", 10), "Two is a romantic term for two, and ten is an example of a mathematical expression.",
     0.0),  # SmolLM2
    (arithmetic(17, "+", 12), "One-thirty.\n\nI hope that helps.", 0.0),  # SmolLM2
    (arithmetic(12, "+", 8), "One-twenty + eight is nonsensical.", 0.0),  # SmolLM2: "one-twenty" is no 20
    (arithmetic(8, "-", 2), 'The answer to the question "What is 8 minus 2?" is 18.', 0.0),  # SmolLM2
    (arithmetic(15, "-", 3), "-12", 0.0),
]

LIST = [
    (listing("musical instruments", 2), "Drum, drums.", 0.5),  # one instrument
    (listing("musical instruments", 3), "Bass guitar, piano, violin.", 1.0),
    (listing("musical instruments", 2), "Guitar, electric guitar.", 0.5),
    (listing("musical instruments", 5, 3), "1. The violin\n2. The viola\n3. The oboe\n4. The trombone\n5. The bass "
                                            "guitar", 1.0),  # SmolLM2
    (listing("birds", 3, 2), "1. a jay\n2. a sparrow\n3. a robin", 1.0),  # SmolLM2
    (listing("birds", 3), "Eagle, blue jay, cardinal.", 1.0),
    (listing("birds", 2), "Two birds: a hen and a chicken.", 0.5),  # a hen is a chicken
    (listing("animals", 5, 2), "Sure, here are five animals:\n1. Gorilla\n2. Zombie\n3. Zombie\n4. Whales\n"
                               "5. Gorillas", 0.4),  # SmolLM2
    (listing("animals", 3), "Lion, tiger, sea lion.", 1.0),
    (listing("animals", 4, 1), "1. lions (big cats)\n2. elephants (lungs, limbs, necks, etc)\n3. bears (lungs, limbs, "
                               "etc)\n4. tigers (lungs, etc.)", 1.0),  # SmolLM2: the glosses list nothing
    (listing("animals", 3), "Mice, mouse and geese.", 2 / 3),
    (listing("fruits", 3), "Apples, apple, banana.", 2 / 3),
    (listing("fruits", 4, 2), "I'd say kiwi, lychee, guava and dragon fruit.", 1.0),
    (listing("fruits", 2), "Apple, banana, mango.", 2 / 3),
    (listing("fruits", 3), "List three fruits.", 0.0),  # echo
    (listing("fruits", 3), "Fruits, fruits, fruits.", 0.0),
    (listing("vegetables", 5, 1), "1. Carrots\n2. Bell peppers\n3. Lettuce\n4. Zucchini\n5. Spinach\n\nThe above answer "
                                  "is incorrect.", 1.0),  # SmolLM2
    (listing("vegetables", 2), "Potato, potatoes.", 0.5),
    (listing("vegetables", 3), "Sweet potato, carrot, broccoli.", 1.0),
    (listing("flowers", 2, 3), "1. Callaflower (Casuarao)\n2. Sunflower (Euphractus albus)", 0.5),  # SmolLM2
    (listing("colors", 4), "Red, blue, grey, gray.", 0.75),
    (listing("colors", 5), "Here are five colors:\n\nBlue\nRed\nYellow\nGreen", 0.8),  # SmolLM2
    (listing("sports", 3), "Soccer, basketball, table tennis.", 1.0),
    (listing("sports", 5, 2), "1. yak 11\n2. yak 11\n3. yak 11\n4. yak 11\n5. yak 11", 0.0),  # SmolLM2
    (listing("trees", 4), "Apple tree, cherry tree, oak, pine.", 1.0),
    (listing("trees", 2), "Oak and maple trees.", 1.0),
]

COLOR = [
    (color("a violet"), "A violet is purple.", 1.0),
    (color("a violet"), "Violet.", 1.0),  # a shade of purple, and the flower's own colour
    (color("a violet"), "Violets are blue.", 0.0),
    (color("an orange"), "An orange is orange.", 1.0),
    (color("an orange"), "Orange.", 1.0),
    (color("an orange"), "Oranges are orange, not green.", 1.0),
    (color("grass"), "Grass is not blue, it is green.", 1.0),
    (color("grass"), "Green or blue.", 0.5),
    (color("grass"), "Grass is green because chlorophyll absorbs red and blue light.", 1.0),
    (color("grass"), "Grass is green, like the sea is blue.", 0.5),  # a second colour in the answer's sentence
    (color("grass"), "What color is grass?", 0.0),  # echo
    (color("the sky on a clear day"), "Azure.", 1.0),
    (color("snow"), "Snow is white.", 1.0),
    (color("snow"), "Snow is black.", 0.0),
    (color("a lemon"), "Bright yellow.", 1.0),
    (color("milk"), "Milk is creamy white.", 1.0),
    (color("an eggplant"), "An eggplant is dark purple.", 1.0),
    (color("a ruby"), "Crimson red.", 1.0),
    (color("a ruby"), "A ruby is a gemstone.", 0.0),
    (color("a pumpkin"), "Pumpkins are usually orange.", 1.0),
    (color("blood"), "Blood is red, not blue.", 1.0),
    (color("a fire truck"), "Red red red", 1.0),
    (color("a stop sign"), "A stop sign is grey.", 0.0),
    (color("coal"), "Coal is jet black.", 1.0),
    (color("a lime"), "Lime green.", 1.0),
    (color("a flamingo"), "A flamingo is pink because of the shrimp it eats.", 1.0),
    (color("a banana"), "A banana is a sweet fruit that we use in many ways, from eating to enjoying, but its true "
                        "color is actually a sweet red fruit with a green skin.", 0.0),  # SmolLM2
    (color("a crow"), "A crow is a bird of prey, named the Corvus c. (corvus) but this color refers to the color of "
                      "their feathers, which are primarily a mix of white and black with a", 0.5),  # SmolLM2
    (color("a swan"), "A swan is a bird.", 0.0),  # SmolLM2
    (color("a school bus in the United States"), "A school bus in the United States is typically a sleek, high-tech "
     "yellow school bus with a bright blue stripe and a silver stripe.", 0.5),  # SmolLM2
    (color("a canary"), "The color of a canary is usually brown and is often described as a bright blue or the like, "
                        "it's the color of a bird.", 0.0),  # SmolLM2
]

INCLUDE = [
    (include("the sea", "wave", "salt"), "Each wave tastes of salt.", 1.0),
    (include("the sea", "wave", "salt"), 'Write one sentence about the sea that uses the words "wave" and "salt".',
     0.0),  # echo
    (include("the sea", "wave", "salt"), 'Here is a sentence that uses the words "wave" and "salt".', 0.0),
    (include("the sea", "wave", "salt"), "The waves crashed, leaving salt on the rocks.", 1.0),
    (include("the sea", "wave", "salt"), "The salty sea was calm.", 0.0),  # "salty" is not "salt"
    (include("the sea", "wave", "salt"), "Wave. Salt.", 0.5),  # two sentences
    (include("the sea", "wave", "salt"), 'Sure! Here is a sentence about the sea that uses the words "wave" and '
                                         '"salt": The wave left salt on the sand.', 0.5),  # two sentences
    (include("the sea", "wave", "salt"), 'Write one sentence about the sea that uses the words "wave" and "salt". '
                                         "The wave left salt.", 0.5),
    (include("a dog", "happy", "bark"), 'The happy dog uses the word "happy" to describe their happy behavior.',
     0.5),  # SmolLM2
    (include("a dog", "ball", "run"), 'The dog is named "Lola" and uses the words "ball" and "run" as a way to '
                                      "communicate with the other dogs in the neighborhood.", 0.0),  # SmolLM2
    (include("a dog", "happy", "bark"), 'This dog, a friendly and lovable terrier named Max, uses the words "happy" '
                                        'and "bark" to comfort his owner.', 0.0),  # SmolLM2
    (include("a city", "night", "street"), 'The city of New Haven uses the terms "night" and "street" to describe '
                                           "its streets.", 0.5),  # SmolLM2
    (include("a dog", "ball", "run"), "The dog ran after the ball.", 1.0),
    (include("a dog", "ball", "run"), "The dog is running after the ball.", 1.0),
    (include("summer", "swim", "beach"), "We swam at the beach all day.", 1.0),
    (include("the moon", "star", "light"), "The moon is a celestial body, shining brightly in the night sky.",
     0.0),  # SmolLM2
    (include("a forest", "tree", "leaf"), "Leaves fell from the trees.", 1.0),
    (include("winter", "ice", "fire"), "The ice on the side of the road is the fire in the heart of a winter "
                                       "wonderland.", 1.0),  # SmolLM2
    (include("breakfast", "morning", "egg"), "I'm making a morning breakfast with eggs and a side of toast.",
     1.0),  # SmolLM2
    (include("breakfast", "coffee", "milk"), '"Morning coffee with milk makes breakfast sweet."', 1.0),
    (include("a city", "car", "busy"), "Cars honk on busy streets.", 1.0),
    (include("the moon", "bright", "round"), "The bright moon hung round and full.", 1.0),
]

LIMIT = [
    (limit("saving money", 10), "Cook at home instead of eating out.", 1.0),
    (limit("saving money", 10), "Save money.", 0.0),  # the goal restated
    (limit("saving money", 10), "Exercise daily.", 0.0),  # a tip, but for another goal
    (limit("saving money", 10), "Do what you want.", 0.0),
    (limit("saving energy at home", 10), "Save money.", 0.0),
    (limit("saving money", 8), "Buy generic brands instead of name brands.", 1.0),
    (limit("saving money", 15), "Pack your lunch instead of buying it.", 1.0),
    (limit("saving money", 10), "Set a budget and track every expense you make each month carefully.", 0.8),
    (limit("sleeping better", 12), "Give one tip for sleeping better in at most 12 words.", 0.0),  # echo
    (limit("sleeping better", 12), "Sleep better.", 0.0),
    (limit("sleeping better", 8), "Avoid screens an hour before bed.", 1.0),
    (limit("sleeping better", 10), "Keep your bedroom cool, dark and quiet.", 1.0),
    (limit("sleeping better", 8), "Drink more water.", 0.0),  # off topic
    (limit("sleeping better", 12), "Drink more water. Give one tip for sleeping better in at most 12 words.",
     0.0),  # on topic only in the echo
    (limit("sleeping better", 12), "Here is one tip for sleeping better: no caffeine after noon.", 1.0),
    (limit("staying healthy", 8), "Staying healthy is 8 words.", 0.0),  # SmolLM2
    (limit("staying healthy", 10), "Walk for thirty minutes every day.", 1.0),
    (limit("staying healthy", 8), "Eat more vegetables and fruit.", 1.0),
    (limit("staying healthy", 12), "1. Stay hydrated. 2. Eat a balanced diet. 3. Get enough sleep. 4. Wash your hands. "
                                   "5. Drink plenty of water. 6. Avoid smoking. 7. Get vaccinated.", 0.0),  # SmolLM2
    (limit("learning a language", 10), "Watch movies with subtitles in that language.", 1.0),
    (limit("learning a language", 15), "Learn a language.", 0.0),
    (limit("studying for an exam", 10), "Study every day!", 1.0),  # SmolLM2
    (limit("keeping a plant alive", 12), "Water it once a week and give it sunlight.", 1.0),
    (limit("cooking pasta", 8), "Salt the water generously before boiling.", 1.0),
    (limit("cooking pasta", 10), "Cook pasta.", 0.0),
    (limit("making friends", 12), "Join a club that matches your hobbies.", 1.0),
    (limit("making friends", 8), "1. Stay positive\n2. Be open and honest about your intentions\n3. Be a good "
                                 "listener", 0.0),  # SmolLM2: 16 words, twice the limit
    (limit("saving energy at home", 15), "Turn off the lights when you leave a room.", 1.0),
    (limit("writing clearly", 8), "Use short sentences.", 1.0),
]

NAME = [
    (name("birds"), "A blue jay is clever.", 1.0),
    (name("birds", 2), "A jay is loud.", 1.0),
    (name("birds"), "Bird.", 0.0),
    (name("birds", 1), "Which bird would you recommend to a friend, and why?", 0.0),  # echo
    (name("animals"), "The Anacondas are a species of marine mammals.", 1.0),  # SmolLM2
    (name("animals", 2), "The trumpet-billed crocodile is an aquatic animal native to Southeast Asia.",
     1.0),  # SmolLM2
    (name("animals"), "Mice are small.", 1.0),
    (name("animals"), "I love a hot dog with mustard.", 0.0),
    (name("vegetables", 1), "Which vegetable would you recommend to a friend, and why?", 0.0),  # echo
    (name("vegetables", 1), "I'd recommend a vegetable because vegetables are healthy.", 0.0),
    (name("vegetables"), "Aubergines are purple.", 1.0),
    (name("vegetables", 2), "Courgette.", 1.0),
    (name("fruits", 2), "Lychee: sweet and floral.", 1.0),
    (name("fruits"), "The Big Apple is a city.", 0.0),
    (name("fruits", 2), "The fruit of the palm was the fruit of the palm tree.", 0.0),  # SmolLM2
    (name("musical instruments"), "The bass guitar keeps the rhythm.", 1.0),
    (name("musical instruments", 2), "Guitar guitar guitar", 1.0),
    (name("sports", 3), "Table tennis is fast.", 1.0),
    (name("sports"), "Ice hockey is played on ice.", 1.0),
    (name("sports", 1), "I'd recommend the following sport: dota. It's a high-level combat sport.", 0.0),  # SmolLM2
    (name("flowers", 2), "A cherry blossom is pink.", 1.0),
    (name("flowers", 3), "I'm not your usual flower of a dream. I'm a reality star.", 0.0),  # SmolLM2
    (name("trees"), "An apple tree blossoms in spring.", 1.0),
    (name("trees"), 'The "Lionel" - A World War II aircraft that was lost on its maiden flight.', 0.0),  # SmolLM2
    (name("colors", 2), "Grey is calm.", 1.0),
]

TABLES = {"capital": CAPITAL, "arithmetic": ARITHMETIC, "list": LIST, "color": COLOR, "include": INCLUDE,
          "limit": LIMIT, "name": NAME}


def test_every_kind_has_a_table_of_at_least_twenty_answers():
    assert set(TABLES) == {"capital", "arithmetic", "list", "color", "include", "limit", "name"}
    for kind, table in TABLES.items():
        assert len(table) >= 20 and all(task.kind == kind for task, _, _ in table), kind


@pytest.mark.parametrize(("task", "answer", "q"), [row for table in TABLES.values() for row in table],
                         ids=[f"{kind}-{i}" for kind, table in TABLES.items() for i in range(len(table))])
def test_the_truth_agrees_with_a_careful_reader(task, answer, q):
    assert quality(task, answer) == pytest.approx(q), (task.text, answer)


# ------------------------------------------------------------------- classes of answers, over every prompt

TRAIN, HELD = make_tasks(600, 200, seed=3)


@pytest.mark.parametrize("task", TRAIN + HELD, ids=lambda t: t.text)
def test_echoing_the_prompt_never_earns_credit(task):
    assert quality(task, task.text) == 0.0
    assert quality(task, f"{task.text} {task.text}") == 0.0
    assert quality(task, f"Sure! {task.text}") == 0.0


def _spelled(n: int) -> str:
    """``n`` (0-999) in English words, written independently of the truth's parser."""
    ones = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen").split()
    tens = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
    if n < 20:
        return ones[n]
    if n < 100:
        return tens[n // 10] + ("" if n % 10 == 0 else "-" + ones[n % 10])
    return ones[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + _spelled(n % 100))


@pytest.mark.parametrize("task", [t for t in TRAIN + HELD if t.kind == "arithmetic"], ids=lambda t: t.text)
def test_a_result_in_words_or_digits_is_right_and_only_the_result_counts(task):
    a, op, b = int(task.params[0]), task.params[1], int(task.params[2])
    result = {"+": a + b, "-": a - b, "x": a * b}[op]
    assert quality(task, f"{_spelled(result).capitalize()}.") == 1.0
    assert quality(task, f"{a} {'times' if op == 'x' else op} {b} is {_spelled(result)}.") == 1.0
    assert quality(task, f"It is not {result + 1}, it is {result}.") == 1.0
    assert quality(task, f"{result + 1}.") == 0.0
    assert quality(task, f"The answer is not {result}.") == 0.0


@pytest.mark.parametrize("country", sorted(CAPITALS))
def test_every_capital_is_right_alone_accented_and_after_a_denied_wrong_one(country):
    right, task = CAPITALS[country], capital(country)
    other = CAPITALS["Peru" if country != "Peru" else "Chile"]
    assert quality(task, f"{right}.") == quality(task, f"It is {right.upper()}.") == 1.0
    assert quality(task, f"Not {other}: {right}.") == quality(task, f"It is not {other}, it is {right}.") == 1.0
    assert quality(task, f"{right} or {other}.") == 0.5
    assert quality(task, f"{country}.") == quality(task, f"{other}.") == 0.0


@pytest.mark.parametrize("thing", sorted(COLORS_OF))
def test_the_thing_asked_about_is_never_its_own_colour(thing):
    right, task = COLORS_OF[thing], color(thing)
    subject = thing[0].upper() + thing[1:]
    assert quality(task, f"{subject} is {right}.") == 1.0
    assert quality(task, f"{subject} is {right}, not {'black' if right != 'black' else 'white'}.") == 1.0
    assert quality(task, f"{subject} is not {right}.") == 0.0


@pytest.mark.parametrize("category", sorted(ITEMS))
def test_every_item_is_named_as_written_and_counted_once_however_often(category):
    for template in range(len(NAME_TEMPLATES)):
        for item in ITEMS[category]:
            assert quality(name(category, template), f"I like the {item}.") == 1.0, item
    for item in ITEMS[category]:
        assert quality(listing(category, 2), f"{item}, {item.upper()}, {item}") == 0.5, item
        if item[-1] not in "sxyfo" and item[-2:] not in ("ch", "sh", "fe"):  # a regular plural: +s
            assert quality(listing(category, 2), f"{item}, {item}s") == 0.5, item


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_required_words_count_where_used_not_where_quoted(topic):
    for w1 in TOPICS[topic]:
        w2 = next(w for w in TOPICS[topic] if w != w1)
        task = include(topic, w1, w2)
        assert quality(task, f"The {w1} and the {w2} were there.") == 1.0
        assert quality(task, f'It uses the words "{w1}" and "{w2}".') == 0.0
        assert quality(task, f"It uses the words {w1} and {w2}.") == 0.0
        assert quality(task, f'The {w1} was there; I quoted "{w2}".') == 0.5


# Fragments of answers: names, numbers, denials, quotes and filler, for answers built at random.
FRAGMENTS = ("Paris", "Kiev", "Canberra", "Sydney", "not", "12", "twelve", "thirty-five", "7 + 5 =", "apple", "apples",
             "drum", "drums", "green", "purple", "orange", "an orange", "is", "the", "wave", "salt", '"salt"',
             'the words "wave" and', "sleep", "budget", "money", "save", "carrot", "blue jay", ",", ".", "!", "\n",
             "I think", "It is", "Sure!", "words")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TRAIN[:70]), st.lists(st.sampled_from(FRAGMENTS), max_size=14), st.booleans())
def test_a_copy_of_the_prompt_never_raises_the_score(task, fragments, before):
    """Property: adding the prompt to any answer, before or after it, earns nothing (the score stays in [0, 1])."""
    answer = " ".join(fragments)
    q = quality(task, answer)
    assert 0.0 <= q <= 1.0
    assert quality(task, f"{task.text} {answer}" if before else f"{answer} {task.text}") <= q + 1e-12


def test_the_disagreement_report_counts_what_differs():
    """benchmarks/truth_disagreement.py on the shipped world: a truth against itself differs nowhere; against a
    truth that scores everything 0 it differs on exactly the answers the new truth scores above 0."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from adadpo.bench.worlds.smollm2 import tasks
    from adadpo.bench.worlds.smollm2.data import SHIPPED

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "truth_disagreement.py"
    spec = importlib.util.spec_from_file_location("truth_disagreement", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    snapshot = next(p for p in sorted(SHIPPED.iterdir()) if (p / "world.json").exists())
    answers, pairs = script.snapshot_answers(snapshot, tasks)
    assert len(answers) == 384 + 2 * len(pairs) and {t.kind for _, t, _ in answers} == set(tasks.KINDS)
    same = script.report(tasks, tasks, answers, pairs, 3, "HEAD")
    rows = [line for line in same.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in
            (*tasks.KINDS, "all")]
    assert len(rows) == 8 and all(" | 0 (0%) | " in r and r.endswith(" | 0 |") for r in rows)
    zero = SimpleNamespace(quality=lambda task, text: 0.0, VERSION=0, KINDS=tasks.KINDS)
    text = script.report(zero, tasks, answers, pairs, 3, "zero")
    positive = sum(tasks.quality(t, a) > 0 for _, t, a in answers)
    assert f"| all | {len(answers)} | {positive} (" in text


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TRAIN[:70]), st.text(max_size=80))
def test_any_text_gets_a_score_in_range(task, answer):
    """Property: whatever the model writes (accents, emoji, stray quotes and brackets), the truth scores it in
    [0, 1] without failing."""
    assert 0.0 <= quality(task, answer) <= 1.0
