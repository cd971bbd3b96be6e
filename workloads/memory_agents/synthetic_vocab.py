"""Word lists and sentence templates for the synthetic LoCoMo-format generator (data only, no logic).

Variety is the point: templates x paraphrases x seeded vocabulary keep lexical retrievers from finding
the gold turn by one rare word, so recall@k does not saturate at small k.
"""

from __future__ import annotations

FIRST_NAMES = (
    "Ada Aiko Alba Alma Amara Anders Ansel Anya Arlo Astrid Aurelio Beatriz Bram Bruno Calla Camila Cato Cyrus "
    "Dalia Dario Delphine Dmitri Edda Eliot Elio Emeka Esme Ezra Farah Felix Fiona Florin Gemma Gideon Greta Hana "
    "Hugo Idris Ilse Imani Ines Ingrid Isak Ivo Jada Jonas Joaquin Juno Kaia Kasimir Keanu Kenji Kira Lars Leila "
    "Lena Lior Lucia Luka Mara Marek Mateo Maya Milo Mira Nadia Nico Nina Noor Odette Olek Omar Orla Otto Paloma "
    "Pavel Petra Quinn Rafael Rania Remy Rhea Rosa Rufus Saanvi Selma Silas Sofia Soren Stellan Talia Tariq Tess "
    "Theo Tomas Uma Valentin Vera Wren Xavier Yara Yusuf Zadie Zane Zora Bodhi Celeste Dorian Elspeth Fenna Gaspar "
    "Hollis Iona Jovan Liesel Magnus Nell Oona Pilar Rowan"
).split()
LAST_NAMES = (
    "Abara Alder Bakshi Barros Bellamy Brandt Calder Castell Chen Dahl Delacroix Duarte Eklund Esposito Falk "
    "Farrow Ferreira Gallo Garnier Halvorsen Hart Hoshino Ibarra Ivers Jansen Kalani Keller Kowalski Lacroix "
    "Lindqvist Lopes Marchetti Mbeki Moreau Nakamura Navarro Novak Okafor Olsen Ortega Pacheco Park Petrov Quint "
    "Rahman Reyes Rinaldi Rossi Salgado Sandoval Schmidt Serrano Silva Sorensen Tanaka Tavares Thorne Ueda Vance "
    "Varga Vidal Voss Wagner Whitlock Wolff Yilmaz Young Zamora Zeller Ahn Bianchi Cruz Dumont Engel Fontaine "
    "Grimaldi Holm Iqbal Jovanovic Kerr Laine Mendes Nilsen Osei Paredes Quiroga Rask Strand Takeda Uriarte "
    "Valdez Weiss Xu Yates Zielinski Achebe Brennan Costa Dunmore"
).split()
RELATIONS = ("cousin", "sister", "brother", "coworker", "neighbor", "friend", "aunt", "uncle", "roommate",
             "old classmate", "teammate", "mentor", "niece", "nephew", "landlord", "bandmate")

# city -> (country, most widely spoken language): the world knowledge behind open-domain questions.
CITIES = {
    "Lisbon": ("Portugal", "Portuguese"), "Porto": ("Portugal", "Portuguese"), "Madrid": ("Spain", "Spanish"),
    "Seville": ("Spain", "Spanish"), "Valencia": ("Spain", "Spanish"), "Lyon": ("France", "French"),
    "Marseille": ("France", "French"), "Bordeaux": ("France", "French"), "Munich": ("Germany", "German"),
    "Hamburg": ("Germany", "German"), "Leipzig": ("Germany", "German"), "Vienna": ("Austria", "German"),
    "Zurich": ("Switzerland", "German"), "Milan": ("Italy", "Italian"), "Bologna": ("Italy", "Italian"),
    "Naples": ("Italy", "Italian"), "Oslo": ("Norway", "Norwegian"), "Bergen": ("Norway", "Norwegian"),
    "Stockholm": ("Sweden", "Swedish"), "Gothenburg": ("Sweden", "Swedish"), "Copenhagen": ("Denmark", "Danish"),
    "Helsinki": ("Finland", "Finnish"), "Reykjavik": ("Iceland", "Icelandic"), "Dublin": ("Ireland", "English"),
    "Edinburgh": ("the United Kingdom", "English"), "Manchester": ("the United Kingdom", "English"),
    "Krakow": ("Poland", "Polish"), "Prague": ("the Czech Republic", "Czech"), "Budapest": ("Hungary", "Hungarian"),
    "Athens": ("Greece", "Greek"), "Istanbul": ("Turkey", "Turkish"), "Cairo": ("Egypt", "Arabic"),
    "Nairobi": ("Kenya", "Swahili"), "Accra": ("Ghana", "English"), "Lagos": ("Nigeria", "English"),
    "Cape Town": ("South Africa", "English"), "Mumbai": ("India", "Hindi"), "Bangalore": ("India", "Kannada"),
    "Kyoto": ("Japan", "Japanese"), "Osaka": ("Japan", "Japanese"), "Seoul": ("South Korea", "Korean"),
    "Busan": ("South Korea", "Korean"), "Taipei": ("Taiwan", "Mandarin"), "Hanoi": ("Vietnam", "Vietnamese"),
    "Bangkok": ("Thailand", "Thai"), "Jakarta": ("Indonesia", "Indonesian"), "Melbourne": ("Australia", "English"),
    "Auckland": ("New Zealand", "English"), "Vancouver": ("Canada", "English"), "Montreal": ("Canada", "French"),
    "Austin": ("the United States", "English"), "Denver": ("the United States", "English"),
    "Chicago": ("the United States", "English"), "Mexico City": ("Mexico", "Spanish"),
    "Bogota": ("Colombia", "Spanish"), "Lima": ("Peru", "Spanish"), "Santiago": ("Chile", "Spanish"),
    "Buenos Aires": ("Argentina", "Spanish"), "Sao Paulo": ("Brazil", "Portuguese"), "Recife": ("Brazil", "Portuguese"),
}
JOBS = (
    "nurse architect electrician pharmacist librarian paramedic carpenter translator sommelier veterinarian "
    "dentist accountant firefighter geologist journalist photographer pilot plumber radiologist baker "
    "landscaper locksmith midwife optometrist physiotherapist surveyor tailor welder florist cartographer "
    "animator archivist barista chemist choreographer curator dietitian economist editor engineer "
    "illustrator instructor jeweler lawyer mechanic meteorologist notary potter programmer social_worker"
).split()
JOBS = tuple(j.replace("_", " ") for j in JOBS)
COMPANY_HEADS = ("Blue", "North", "Silver", "Iron", "Bright", "Cedar", "Harbor", "Summit", "Copper", "Maple",
                 "Quarry", "Lantern", "Falcon", "Meadow", "Granite", "Willow", "Beacon", "Orchard", "Tidal", "Ember")
COMPANY_TAILS = ("peak", "field", "stone", "gate", "brook", "wave", "line", "ridge", "works", "port", "vale", "crest")
COMPANY_KINDS = ("Analytics", "Logistics", "Clinic", "Studios", "Bakery", "Robotics", "Press", "Architects",
                 "Foods", "Energy", "Labs", "Outfitters")
PET_SPECIES = ("beagle", "tabby cat", "parrot", "corgi", "rabbit", "greyhound", "hamster", "tortoise",
               "border collie", "siamese cat", "gecko", "ferret", "poodle", "canary", "guinea pig", "husky",
               "cockatiel", "dachshund", "bearded dragon", "maine coon")
PET_NAMES = (
    "Biscuit Pepper Mango Juniper Noodle Pickle Waffle Clover Ziggy Mochi Pretzel Olive Sprout Nugget Basil Comet "
    "Dumpling Fig Gizmo Hazel Inky Jasper Kiwi Loki Maple Nimbus Oreo Pixel Quincy Rusty Sable Tofu Umber Velvet "
    "Wasabi Yoshi Zuzu Acorn Bramble Cinder Dottie Echo Fennel Gnocchi Honey Igloo Jelly Kale Lentil Muffin Nacho "
    "Opal Peanut Quill Ripley Saffron Truffle Udon Vesper Whisker Yuzu Ziti Bean Chai Dash Ember Frodo Gus Hopper"
).split()
HOBBIES = (
    "rock climbing", "pottery", "birdwatching", "salsa dancing", "woodworking", "trail running", "knitting",
    "chess", "beekeeping", "kayaking", "calligraphy", "fencing", "astronomy", "origami", "sourdough baking",
    "film photography", "archery", "gardening", "scuba diving", "improv theater", "bouldering", "embroidery",
    "skateboarding", "fly fishing", "glassblowing", "orienteering", "stand-up paddling", "watercolor painting",
    "tai chi", "cycling", "geocaching", "bookbinding", "sailing", "judo", "home brewing", "mountain biking",
    "crossword puzzles", "sculpting", "foraging", "ceramics glazing", "ballroom dancing", "ice skating",
)
FOODS = (
    "pad thai", "ramen", "paella", "lasagna", "pho", "falafel", "sushi", "tacos al pastor", "goulash", "pierogi",
    "moussaka", "bibimbap", "shakshuka", "risotto", "jollof rice", "butter chicken", "empanadas", "ceviche",
    "dumplings", "fish and chips", "gnocchi", "laksa", "bouillabaisse", "katsu curry", "arepas", "tagine",
    "pastel de nata", "carbonara", "kimchi stew", "banh mi", "feijoada", "poutine", "spanakopita", "dal makhani",
)
INSTRUMENTS = ("cello", "violin", "banjo", "clarinet", "drums", "ukulele", "saxophone", "harp", "trumpet",
               "accordion", "bass guitar", "piano", "flute", "mandolin", "oboe", "trombone", "harmonica",
               "viola", "xylophone", "bagpipes")
CAR_COLORS = ("red", "silver", "dark green", "white", "navy blue", "yellow", "black", "orange", "grey", "teal")
CAR_MODELS = ("Volvo estate", "hatchback", "pickup truck", "electric scooter", "camper van", "convertible",
              "minivan", "vintage Beetle", "sedan", "cargo bike", "motorbike", "Jeep")

ACTIVITIES = (  # (past tense, base form for questions, a paraphrase of the past tense with other words)
    ("ran a half marathon", "run a half marathon",
     "finished a 21-kilometre race"),
    ("adopted a kitten", "adopt a kitten",
     "brought home a tiny rescue cat"),
    ("went to a jazz concert", "go to a jazz concert",
     "caught a live saxophone quartet"),
    ("gave a talk", "give a talk",
     "presented in front of a crowd"),
    ("planted a vegetable garden", "plant a vegetable garden",
     "put tomato and bean seedlings in the ground"),
    ("volunteered at a food bank", "volunteer at a food bank",
     "helped sort donated groceries"),
    ("took a cooking class", "take a cooking class",
     "learned to cook with a chef"),
    ("visited an art museum", "visit an art museum",
     "wandered through a gallery of paintings"),
    ("went camping", "go camping",
     "slept in a tent under the stars"),
    ("signed up for a pottery workshop", "sign up for a pottery workshop",
     "enrolled in a clay course"),
    ("hosted a board game night", "host a board game night",
     "had friends over for tabletop games"),
    ("went to a wedding", "go to a wedding",
     "watched two friends get married"),
    ("started a book club", "start a book club",
     "gathered some readers for a monthly discussion"),
    ("went on a job interview", "go on a job interview",
     "met a hiring manager"),
    ("painted a mural", "paint a mural",
     "covered a wall with a big painting"),
    ("joined a choir rehearsal", "join a choir rehearsal",
     "sang with a choir"),
    ("went to a farmers market", "go to a farmers market",
     "bought produce from local growers"),
    ("had a dentist appointment", "have a dentist appointment",
     "sat in the dentist's chair for a checkup"),
    ("climbed a via ferrata", "climb a via ferrata",
     "scaled a cliff on steel cables"),
    ("watched a meteor shower", "watch a meteor shower",
     "saw shooting stars all night"),
    ("baked a wedding cake", "bake a wedding cake",
     "made a three-tier cake for a bride"),
    ("went to a charity gala", "go to a charity gala",
     "dressed up for a fundraising dinner"),
    ("took a ferry trip", "take a ferry trip",
     "crossed the water by boat"),
    ("attended a poetry reading", "attend a poetry reading",
     "listened to poets read their work"),
    ("fixed an old bicycle", "fix an old bicycle",
     "repaired a rusty bike"),
    ("went to a karaoke night", "go to a karaoke night",
     "sang pop songs into a microphone"),
    ("finished a jigsaw puzzle", "finish a jigsaw puzzle",
     "placed the last of a thousand puzzle pieces"),
    ("went to a beach cleanup", "go to a beach cleanup",
     "picked up litter on the sand"),
    ("won a trivia contest", "win a trivia contest",
     "took first prize at a quiz night"),
    ("went to a vintage fair", "go to a vintage fair",
     "browsed second-hand stalls"),
)
VENUES = ("at the community center", "at the library", "near the old harbor", "at the botanical garden",
          "downtown", "at the town hall", "by the river", "at the university", "at a friend's place",
          "in the park", "at the convention center", "on the waterfront")
EVENT_TIMES = ("today", "this morning", "earlier today", "this afternoon", "just a few hours ago", "this evening")

OPENERS = ("", "", "", "Oh, by the way, ", "Guess what? ", "Funny story: ", "So, ", "Quick update: ",
           "You won't believe it, but ", "Honestly, ", "News from my side: ", "Anyway, ")
CLOSERS = ("", "", "", " It's been quite a change.", " I'm really happy about it.", " Still getting used to it.",
           " Life moves fast!", " Wish me luck.", " It feels right.", " More on that later.")
REACTIONS = ("That sounds amazing!", "Wow, good for you!", "Oh no, that's rough.", "Ha, classic.",
             "I'm so glad to hear that.", "That's wild.", "Nice, tell me more.", "Sounds like a busy week.",
             "I love that.", "Huh, I didn't expect that.", "Totally agree.", "Same here, honestly.",
             "That makes sense.", "Oh wow.", "How exciting!", "That's a relief.")
FOLLOWUPS = ("How did it go?", "How are you feeling about it?", "What's next for you?", "Was it worth it?",
             "Did anyone else come along?", "What made you decide that?", "Any plans for the weekend?",
             "How's everything else going?", "Are you sleeping okay lately?", "Have you been busy at home?")
SMALL_TALK = ("The weather has been {weather} all week.", "I finally finished that {media} everyone talks about.",
              "My {room} is a mess right now.", "I've been drinking way too much {drink} lately.",
              "Traffic was terrible on the way back from {errand}.", "I keep forgetting to call the {service}.",
              "I spent the whole evening {chore}.", "The new {media} from that studio was {opinion}.",
              "I need a vacation from {errand}, honestly.", "We should catch up properly over {drink} soon.")
SMALL_TALK_FILL = {
    "weather": ("rainy", "weirdly warm", "freezing", "grey and windy", "lovely", "humid"),
    "media": ("series", "podcast", "novel", "documentary", "album", "video game", "film"),
    "room": ("kitchen", "garage", "balcony", "closet", "desk", "living room"),
    "drink": ("coffee", "green tea", "lemonade", "hot chocolate", "sparkling water", "chai"),
    "errand": ("the grocery store", "the post office", "the airport", "the dentist", "the hardware store"),
    "service": ("plumber", "bank", "insurance company", "landlord", "internet provider"),
    "chore": ("doing laundry", "sorting old photos", "answering emails", "cleaning the oven", "fixing the shelf"),
    "opinion": ("overrated", "surprisingly good", "a bit long", "fantastic", "forgettable"),
}
