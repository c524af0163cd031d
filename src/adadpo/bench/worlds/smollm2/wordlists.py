"""The word lists behind the real-model world's prompts and their truth (:mod:`adadpo.bench.worlds.smollm2.tasks`).

Two sorts of list live here. The *prompt* lists (the keys of :data:`CAPITALS`, :data:`CATEGORIES`,
:data:`COLORS_OF`, :data:`TOPICS`, :data:`GOALS`) decide which questions are asked; changing them changes the
world's prompts. The *answer* lists (the capitals' other names, the items of each category, the colour
families, the goals' topic stems) decide which answers a careful reader accepts; they are meant to be as wide as
such a reader: a capital's accents, local and former English names ("Brasília", "Kiev"), many items per
category, multiword items ("blue jay", "bass guitar"), and the ordinary vocabulary of an on-topic tip.

Items are written ``"word"`` or ``"word/synonym/..."``: the names after a slash are the same item (``gray/grey``,
``drum/drum kit``), so naming both counts once. Plurals are derived (see ``tasks._forms``); irregular ones
are in :data:`IRREGULAR_PLURALS`. All lists are lower case ASCII: answers are folded to ASCII before matching.
"""

from __future__ import annotations

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
#: Other names a reader accepts for a capital: local names, other spellings, former English names of the
#: same city (not a former capital elsewhere: Rio de Janeiro is not an answer for Brazil).
CAPITAL_NAMES = {
    "Italy": "roma", "Japan": "tokio", "China": "peking/peiping", "Russia": "moskva", "Greece": "athina",
    "India": "delhi", "Norway": "christiania/kristiania", "Finland": "helsingfors", "Poland": "warszawa",
    "Portugal": "lisboa", "Austria": "wien", "Turkey": "angora", "Thailand": "krung thep",
    "Vietnam": "ha noi", "Cuba": "la habana/habana", "Chile": "santiago de chile", "Colombia": "santa fe de bogota",
    "Denmark": "kobenhavn", "Belgium": "bruxelles/brussel", "Switzerland": "berne", "Iran": "teheran",
    "Iraq": "bagdad", "Indonesia": "djakarta/batavia", "Ukraine": "kiev/kiew", "Czech Republic": "praha",
    "Romania": "bucuresti", "Mexico": "ciudad de mexico/mexico df/cdmx", "Ethiopia": "addis abeba",
    "Ireland": "baile atha cliath", "Egypt": "al qahira", 
}
#: Capitals of countries that are never asked about: naming one is naming a wrong capital too.
OTHER_CAPITALS = ("london washington_dc/washington kabul tirana algiers luanda yerevan baku dhaka minsk sofia "
                  "phnom_penh zagreb nicosia quito tallinn tbilisi accra guatemala_city kingston amman astana "
                  "kuwait_city bishkek riga beirut vilnius kuala_lumpur valletta chisinau ulaanbaatar kathmandu "
                  "wellington managua islamabad panama_city asuncion doha riyadh dakar belgrade bratislava "
                  "ljubljana pretoria colombo khartoum damascus taipei dushanbe dodoma tunis kampala abu_dhabi "
                  "montevideo tashkent harare lusaka pyongyang ashgabat reykjavik").split()

CATEGORIES = {
    "fruits": "apple banana orange grape mango pear peach cherry strawberry lemon lime kiwi/kiwifruit pineapple "
              "watermelon melon plum apricot blueberry raspberry coconut papaya fig pomegranate grapefruit "
              "avocado blackberry cranberry nectarine tangerine/mandarin date cantaloupe honeydew guava lychee "
              "passion_fruit dragon_fruit persimmon quince gooseberry currant mulberry elderberry clementine "
              "kumquat starfruit jackfruit durian plantain tomato olive raisin prune satsuma boysenberry "
              "huckleberry rhubarb",
    "animals": "dog/puppy cat/kitten horse/pony cow/cattle pig sheep/lamb goat lion tiger elephant bear wolf fox "
               "rabbit/bunny deer monkey giraffe zebra kangaroo panda mouse rat camel dolphin whale shark eagle owl "
               "snake frog turtle duck chicken/hen penguin hippo/hippopotamus rhino/rhinoceros squirrel leopard "
               "cheetah koala gorilla chimpanzee/chimp orangutan crocodile alligator lizard anaconda python cobra "
               "octopus jellyfish crab lobster seal sea_lion walrus otter beaver raccoon skunk badger hedgehog "
               "hamster guinea_pig ferret bat moose elk reindeer bison buffalo ox donkey mule llama alpaca "
               "jaguar puma cougar lynx panther hyena meerkat sloth armadillo porcupine ostrich parrot goose swan "
               "salmon tuna fish bird insect bee ant butterfly spider ladybug worm snail toad salamander "
               "tortoise iguana chameleon gecko antelope gazelle wildebeest mole opossum lemur baboon polar_bear "
               "grizzly/grizzly_bear platypus wombat squid starfish manatee narwhal",
    "colors": "red blue green yellow orange purple pink black white brown gray/grey violet indigo turquoise "
              "beige maroon navy/navy_blue teal cyan magenta gold silver crimson scarlet azure lavender lilac "
              "mauve cream tan khaki olive amber coral bronze copper burgundy ivory",
    "vegetables": "carrot potato tomato onion garlic broccoli cabbage lettuce spinach pepper/bell_pepper cucumber "
                  "pea bean corn/sweetcorn/maize celery cauliflower zucchini/courgette eggplant/aubergine pumpkin "
                  "radish beet/beetroot kale asparagus leek turnip sweet_potato yam squash artichoke okra "
                  "brussels_sprout sprout parsnip shallot chard arugula/rocket green_bean chickpea lentil "
                  "mushroom ginger bok_choy collard rutabaga/swede fennel scallion/spring_onion chili/chilli "
                  "jalapeno watercress endive kohlrabi",
    "sports": "soccer football/american_football basketball tennis baseball golf hockey/ice_hockey cricket rugby "
              "volleyball swimming cycling boxing running skiing badminton wrestling surfing rowing fencing "
              "table_tennis/ping_pong softball handball lacrosse polo water_polo archery gymnastics karate "
              "judo taekwondo martial_arts snowboarding skateboarding climbing/rock_climbing marathon triathlon "
              "sailing canoeing kayaking diving equestrian/horse_riding bowling darts snooker billiards "
              "squash curling figure_skating skating athletics/track_and_field weightlifting motorsport "
              "formula_one netball kickboxing mma",
    "musical instruments": "piano/grand_piano guitar/acoustic_guitar/electric_guitar violin/fiddle drum/drum_kit/"
                           "drum_set flute trumpet saxophone/sax cello harp clarinet trombone ukulele banjo "
                           "accordion harmonica oboe bass/bass_guitar/double_bass organ tuba viola keyboard "
                           "synthesizer xylophone marimba tambourine triangle bagpipes bassoon french_horn/horn "
                           "cornet piccolo recorder mandolin sitar lute cymbal bongo conga timpani glockenspiel "
                           "didgeridoo harpsichord kazoo bugle euphonium castanets maracas",
    "birds": "eagle owl sparrow robin pigeon/dove crow parrot penguin duck swan goose hawk falcon flamingo "
             "peacock ostrich hummingbird woodpecker seagull/gull chicken/hen/rooster turkey raven pelican stork heron "
             "jay/blue_jay cardinal finch/goldfinch canary blackbird starling magpie kingfisher vulture condor "
             "albatross puffin emu kiwi toucan cockatoo parakeet/budgie macaw swallow wren thrush nightingale "
             "lark crane egret ibis quail pheasant partridge grouse cuckoo kestrel osprey buzzard mockingbird "
             "bluebird oriole tit/chickadee warbler cormorant sandpiper",
    "flowers": "rose tulip daisy lily sunflower orchid daffodil lavender jasmine violet peony carnation "
               "marigold poppy iris lotus dandelion hibiscus magnolia chrysanthemum begonia geranium petunia "
               "azalea rhododendron camellia gardenia lilac hydrangea zinnia dahlia aster snapdragon "
               "bluebell buttercup crocus hyacinth freesia cosmos foxglove honeysuckle primrose pansy "
               "gladiolus lupine/lupin morning_glory cherry_blossom water_lily forget-me-not edelweiss "
               "anemone clover heather wisteria bougainvillea calla_lily/calla",
    "trees": "oak maple pine birch willow cedar elm ash spruce fir palm cherry apple redwood sequoia cypress "
             "beech poplar baobab eucalyptus bamboo mahogany teak chestnut walnut hazel sycamore aspen larch "
             "hemlock juniper yew magnolia dogwood alder linden/lime_tree hawthorn rowan olive fig banyan "
             "acacia cottonwood hickory mango_tree orange_tree lemon_tree pear_tree plum_tree peach_tree "
             "banana_tree coconut_tree/coconut_palm christmas_tree ginkgo cedar_of_lebanon jacaranda "
             "sassafras mulberry holly",
}
CATEGORIES["animals"] += " " + CATEGORIES["birds"]  # a bird is an animal
#: Names that contain an item of a category but are not one ("Golden Raspberry" is an award, "Big Apple" a
#: city, "hot dog" food): there the item does not count.
_FRUIT_NAMES = ("golden raspberry", "big apple", "apple inc", "apple watch", "apple music", "apple computer",
                "orange county", "to date", "up to date", "play date", "first date")
NOT_ITEMS = {
    "fruits": _FRUIT_NAMES + ("lime green",),
    "trees": _FRUIT_NAMES + ("pine nut", "pine cone", "palm of", "your palm", "his palm", "her palm"),
    "animals": ("hot dog", "python code", "python programming", "bat mitzvah", "duck tape", "bear in mind",
                "bear with", "mouse click", "computer mouse"),
    "birds": ("duck tape", "crane lift", "construction crane"),
    "vegetables": ("black pepper", "chili powder", "chilli powder", "ginger powder", "garlic powder",
                   "onion powder", "peanut butter", "corn syrup"),
    "musical instruments": ("sea bass", "organ donor", "body organ", "organs of"),
    "flowers": ("rose gold", "iris of"),
}

#: Colours a reader takes as a shade of another (the sky is "azure": blue). A shade answers like its colour.
SHADES = {"purple": "violet lavender lilac mauve magenta", "red": "crimson scarlet burgundy maroon",
          "blue": "azure navy navy_blue", "white": "cream ivory", "yellow": "gold amber", "brown": "tan bronze",
          "gray": "silver", "black": "", "green": "olive", "orange": "amber copper", "pink": "coral"}

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
#: Irregular forms of the required words (past tenses a reader accepts as using the word).
IRREGULAR_FORMS = {"run": ("ran",), "swim": ("swam", "swum"), "leaf": ("leaves",), "person": ("people",)}
IRREGULAR_PLURALS = {"mouse": "mice", "goose": "geese", "ox": "oxen", "cactus": "cacti", "octopus": "octopi",
                     "tooth": "teeth", "foot": "feet", "child": "children", "fungus": "fungi"}

GOALS = {  # goal -> stems of words that show a tip is on topic (a word starting with a stem counts)
    "sleeping better": ("sleep", "bed", "night", "caffein", "coffee", "tea", "screen", "phone", "dark", "routine",
                        "rest", "nap", "tired", "relax", "alarm", "pillow", "mattress", "dream", "evening", "morning",
                        "wake", "quiet", "cool", "room", "schedule", "hour", "meditat", "breath", "light", "lamp",
                        "noise", "earplug", "blanket", "temperature", "alcohol", "exercis", "device", "tv",
                        "television", "blue light", "same time", "early", "late", "read", "book", "calm", "stress",
                        "worr", "journal", "warm", "bath", "shower", "lavender", "melatonin", "herbal", "consisten",
                        "wind down", "unwind", "doze", "asleep", "insomnia", "bedtime", "lie", "stretch", "yoga",
                        "curtain", "mask", "music"),
    "saving money": ("money", "sav", "budget", "spend", "buy", "cost", "cash", "price", "bank", "expens", "pay",
                     "dollar", "cheap", "coupon", "discount", "debt", "income", "purchas", "shop", "track", "invest",
                     "bill", "account", "financ", "afford", "cook", "meal", "lunch", "restaurant", "eat out",
                     "eating out", "takeout", "subscri", "impuls", "sale", "deal", "bargain", "brand", "generic",
                     "second-hand", "secondhand", "thrift", "automat", "emergency", "fund", "retire", "credit", "card",
                     "loan", "interest", "salary", "earn", "wage", "paycheck", "payday", "receipt", "grocer", "wallet",
                     "cent", "penny", "pennies", "piggy", "jar", "aside", "percent", "%", "$", "cancel", "compar",
                     "frugal", "wasteful", "waste", "coffee", "luxur", "energy", "electric", "utilit", "rent",
                     "mortgage", "tax", "fee", "insur", "wholesale", "bulk", "mall", "splurge", "envelope", "stock",
                     "fund", "pension", "rich", "wealth", "economi", "shopping list", "cut back", "cut down",
                     "pack lunch", "pack your lunch", "home-cooked", "atm", "free", "stay home", "at home", "brew"),
    "staying healthy": ("health", "exercis", "water", "eat", "food", "sleep", "walk", "vegetable", "fruit", "diet",
                        "drink", "hydrat", "active", "workout", "fit", "nutri", "meal", "rest", "stress", "doctor",
                        "move", "run", "sugar", "body", "weight", "smok", "alcohol", "vitamin", "wash", "germ",
                        "vaccin", "check-up", "checkup", "protein", "salad", "junk", "processed", "fried", "salt",
                        "gym", "sport", "yoga", "stretch", "jog", "swim", "bike", "cycl", "stair", "outdoor",
                        "fresh air", "sun", "breath", "meditat", "relax", "calm", "balanced", "portion", "snack",
                        "breakfast", "dinner", "lunch", "cook", "green", "whole grain", "fiber", "fibre", "calori",
                        "cholesterol", "heart", "mental", "friend", "laugh", "posture", "floss", "teeth", "brush",
                        "steps", "soda", "nap"),
    "learning a language": ("word", "practic", "speak", "language", "read", "listen", "vocabular", "daily", "native",
                            "learn", "grammar", "convers", "app", "phrase", "lesson", "class", "talk", "immers",
                            "flashcard", "tutor", "study", "fluent", "translat", "write", "movie", "film", "show",
                            "tv", "music", "song", "podcast", "book", "news", "radio", "subtitle", "pronunc", "accent",
                            "dictionar", "sentence", "verb", "noun", "travel", "abroad", "country", "partner",
                            "exchange", "duolingo", "mistake", "repeat", "memor", "card", "label", "journal", "diary",
                            "think", "course", "teacher", "chat", "friend", "every day", "minute", "habit", "culture",
                            "speaker", "audio", "spanish", "french", "english", "german", "chinese", "mandarin",
                            "japanese", "italian", "foreign", "consisten", "patient", "patience"),
    "studying for an exam": ("study", "studi", "exam", "note", "review", "practic", "read", "sleep", "break", "test",
                             "question", "learn", "plan", "schedul", "focus", "revis", "material", "quiz", "memor",
                             "subject", "topic", "class", "book", "time", "flashcard", "card", "past paper", "summar",
                             "highlight", "outline", "chapter", "concept", "teach", "explain", "group", "tutor",
                             "pomodoro", "distract", "phone", "quiet", "early", "cram", "night", "rest", "daily",
                             "every day", "each day", "hour", "minute", "chunk", "section", "understand", "formula",
                             "mock", "answer", "prepar", "goal", "list", "diagram", "mind map", "recall", "repeat",
                             "repetition", "space", "desk", "library", "eat", "water", "breakfast", "calm", "relax",
                             "stress", "confiden", "syllabus", "lecture", "textbook", "homework", "exercise",
                             "problem", "mistake", "weak", "strength", "priorit", "organiz", "organis", "timer"),
    "keeping a plant alive": ("water", "sun", "light", "soil", "plant", "pot", "leaves", "leaf", "fertiliz",
                              "sunlight", "root", "drain", "window", "prun", "grow", "moist", "dry", "feed", "humid",
                              "shade", "garden", "mist", "spray", "temperature", "warm", "cold", "frost", "draft",
                              "repot", "compost", "mulch", "pest", "bug", "insect", "trim", "dead", "wilt", "yellow",
                              "brown", "overwater", "underwater", "drown", "rot", "finger", "inch", "week", "daily",
                              "every day", "schedule", "indoor", "outdoor", "sill", "bright", "direct", "indirect",
                              "nutrient", "food", "bloom", "flower", "stem", "dust", "clean", "rain", "hose", "saucer",
                              "tray", "gravel", "species", "succulent", "cactus", "fern", "nutri"),
    "writing clearly": ("sentence", "word", "short", "simple", "clear", "read", "write", "writ", "edit", "paragraph",
                        "concise", "jargon", "plain", "reader", "idea", "point", "grammar", "proofread", "draft",
                        "revis", "outline", "active voice", "passive", "voice", "adverb", "adjective", "verb", "noun",
                        "filler", "cut", "delete", "remove", "unnecessary", "redundan", "repeat", "repetition",
                        "structure", "organiz", "organis", "topic", "audience", "aloud", "out loud", "spelling",
                        "punctuat", "comma", "period", "specific", "precise", "example", "heading", "list", "bullet",
                        "language", "vocabular", "term", "tone", "brief", "brevity", "length", "complex", "complicat",
                        "fluff", "purpose", "message", "logical", "flow", "transition", "feedback", "review", "typo",
                        "thesaurus", "cliche", "understand"),
    "cooking pasta": ("water", "salt", "boil", "pasta", "minute", "sauce", "pot", "cook", "drain", "taste", "al dente",
                      "noodle", "spaghetti", "stir", "oil", "heat", "time", "timer", "package", "packet", "box",
                      "instruction", "stick", "bite", "overcook", "undercook", "tender", "firm", "chew", "garlic",
                      "cheese", "parmesan", "butter", "olive", "tomato", "basil", "herb", "pan", "colander", "strain",
                      "rinse", "reserve", "starch", "ladle", "fresh", "dry", "penne", "macaroni", "fettuccine",
                      "linguine", "lasagna", "rigatoni", "ravioli", "gnocchi", "stove", "burner", "flame", "simmer",
                      "rolling", "bubbl", "lid", "toss", "serve", "plate", "season", "pepper", "liter", "litre",
                      "quart", "gallon", "flavor", "flavour", "recipe", "dough", "flour", "egg"),
    "making friends": ("friend", "people", "talk", "club", "join", "group", "smil", "listen", "conversation", "meet",
                       "social", "kind", "hobb", "event", "class", "volunteer", "ask", "interest", "introduc", "hello",
                       "hi ", "greet", "neighbo", "cowork", "colleague", "party", "invit", "coffee", "lunch", "dinner",
                       "chat", "share", "approach", "yourself", "genuine", "honest", "curious", "question",
                       "compliment", "help", "support", "trust", "loyal", "community", "team", "sport", "gym",
                       "church", "online", "app", "meetup", "common", "activit", "outgoing", "shy", "confiden",
                       "eye contact", "say yes", "reach out", "message", "text", "call", "follow up", "relationship",
                       "empath", "positive", "fun", "laugh", "humor", "humour", "respect", "attention"),
    "saving energy at home": ("energy", "light", "lamp", "bulb", "led", "turn", "switch", "power", "heat",
                              "thermostat", "unplug", "electric", "appliance", "insulat", "window", "water", "off",
                              "solar", "bill", "temperature", "door", "draft", "draught", "curtain", "blind", "shade",
                              "sun", "fan", "air condition", "ac ", "cool", "warm", "degree", "shower", "bath", "hot",
                              "boiler", "furnace", "washing", "laundry", "dishwasher", "dryer", "fridge",
                              "refrigerator", "freezer", "oven", "stove", "microwave", "kettle", "device", "charger",
                              "standby", "tv", "television", "computer", "efficien", "star rating", "energy star",
                              "smart", "timer", "seal", "caulk", "weather", "sweater", "blanket", "cold", "wash",
                              "full load", "air dry", "line dry", "daylight", "natural", "room", "plug",
                              "socket", "outlet", "kwh", "watt", "meter", "usage", "consum", "waste", "reduce"),
}

#: Words that say nothing on their own: an answer whose other words all come from its prompt only restates it.
STOPWORDS = frozenset(
    "a an the and or but if then so to of in on at for by with from into onto about as is are was were be been being "
    "am do does did done doing have has had having can could will would shall should may might must it its it's "
    "this that these those i me my you your yours we our us he she they them their his her him here there what "
    "which who whom whose when where why how all any each every some no not only just also very too more most "
    "less much many such than up down out over under again once one tip tips give given word words at most "
    "least make get got go going let lets let's sure okay ok please thank thanks yes well way ways really "
    "always never try good better best great important key remember simply simple don't doesn't can't won't "
    "isn't aren't i'm you're here's that's there's".split())
