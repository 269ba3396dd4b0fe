"""``rlvr/IFEval-v0`` (alias ``ifeval``): verifiable instruction following.

* **held-out split**: the 541 IFEval prompts (Zhou et al. 2023, Apache-2.0), from a local file or
  folder (``path=../shared/data/ifeval``) or the hub name ``google/IFEval`` (the default);
* **training split**: procedural prompts that never overlap IFEval: a task stem written for this
  project (`TOPICS`; a yes/no question of `QUESTIONS` for "choose one") followed by 1 to 3 sampled
  instructions with their arguments, compatible combinations only, and always one that a
  degenerate answer breaks (`DEGENERATE_PROBES`: ".", "42", ... follow none of the task); a prompt
  belongs to the training split only if a hash of its text says so (``content_split``), and no
  prompt equal to a test prompt, or built on a stem that occurs in a test prompt, is ever emitted.
  Each training task carries a gold response built together with its instructions from sentences
  on its stem's own topic (in French, German or Spanish for a few stems under "answer only in ..."),
  so the gold demonstrably follows them in both modes: the numeric arguments are read off it. Used
  by SFT and by ``check_env``.

Reward: ``reward="all"`` (1 when every instruction is followed, strict) or ``"fraction"``, in
``mode="train"`` (the default, whatever the split: stricter checkers, and a degenerate response that
does not address the prompt scores 0; see `verifiers.ifeval`) or ``mode="benchmark"`` (lm-eval's
definition, which ``algos.evaluate`` and the alignment-tax suite select). The format part is the
math envs' (``<think>...</think>`` then ``<answer>...</answer>``), and the checkers read the response
inside ``<answer>`` (or after ``</think>``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from envs.core import (EnvError, Task, TaskSource, TextEnv, content_split, item_rng, looks_local, not_found_locally,
                        path_hint, quiet_hub, read_jsonl)
from verifiers import ifeval as ifv
from verifiers.format import FormatVerifier
from verifiers.rewards import Rubric

IFEVAL_INSTRUCTION = ("Think inside <think> </think>, then give your whole response inside <answer> </answer>. "
                      "Follow every instruction in the request exactly.")

TOPICS = {  # each stem with comma-free sentences on its own topic, from which its gold responses are built
    "Write a short note to a neighbour about a parcel that was left at your door.": [
        "a parcel with your name on it was left at my door this morning",
        "the courier must have mixed up our house numbers",
        "I have kept the box inside so that the rain would not spoil it",
        "you can knock on my door any evening to collect it",
        "the label says it came from a garden shop in the next town"],
    "Describe how a lighthouse keeper might spend a quiet winter evening.": [
        "the keeper climbs the spiral stairs to check the great lamp",
        "after the lamp is trimmed he writes the weather in the log book",
        "a kettle hums on the small iron stove in the keeper's room",
        "outside the waves break against the rocks below the tower",
        "before bed he watches the beam sweep across the dark water"],
    "Explain to a child why the sky looks blue during the day.": [
        "sunlight looks white but it is made of many colours mixed together",
        "when sunlight enters the air it bumps into tiny bits of gas",
        "blue light gets scattered around the sky much more than red light",
        "so wherever you look up some of that scattered blue light reaches your eyes",
        "at sunset the light travels through more air and the sky turns orange"],
    "Write a product description for a reusable water bottle made of glass.": [
        "this reusable bottle is made of strong clear glass that keeps water tasting fresh",
        "a soft silicone sleeve protects the glass from bumps and knocks",
        "the steel lid screws on tightly so nothing leaks into your bag",
        "the bottle holds enough water for a long walk or a busy day at work",
        "it is safe to wash in the dishwasher and never keeps old smells"],
    "Give advice to someone who is starting to learn the violin as an adult.": [
        "find a patient teacher who enjoys working with adult beginners",
        "practise for a short time every day rather than for hours once a week",
        "record yourself playing so that you can hear how your tone improves",
        "do not worry about squeaks because every violinist made them at first",
        "choose simple tunes you love so that practice stays fun"],
    "Summarize the benefits of walking to work instead of driving.": [
        "walking to work builds daily exercise into a busy schedule",
        "it saves money on fuel and parking every single month",
        "walkers arrive with clearer heads than drivers stuck in traffic",
        "fewer cars on the road mean cleaner air for the whole town",
        "a regular walk also helps people sleep better at night"],
    "Write a welcome message for new members of a community gardening club.": [
        "welcome to our community gardening club and thank you for joining us",
        "every member gets a small plot and a key to the tool shed",
        "we meet on Saturday mornings to share seeds and tips",
        "beginners are paired with an experienced gardener for the first season",
        "we look forward to growing vegetables and flowers together with you"],
    "Describe the smell and sound of a bakery early in the morning.": [
        "the bakery smells of warm bread and melting butter before sunrise",
        "ovens hum and tick as they heat up behind the counter",
        "a baker hums softly while shaping rolls on a floury table",
        "the sweet smell of cinnamon drifts out into the empty street",
        "trays clatter as the first loaves come out golden and crisp"],
    "Write a thank you message to a teacher who helped you with mathematics.": [
        "thank you for all the patience you showed me in mathematics class",
        "you explained fractions until they finally made sense to me",
        "your extra lessons after school gave me the confidence to ask questions",
        "I passed my final exam because you never gave up on me",
        "I will remember your kindness whenever I solve a hard problem"],
    "Explain how to care for a small cactus on a sunny windowsill.": [
        "a cactus loves bright sunlight so a sunny windowsill suits it well",
        "water it only when the soil has dried out completely",
        "in winter the cactus rests and needs water only once a month",
        "use a pot with a hole in the bottom so that water can drain away",
        "turn the pot now and then so that the cactus grows straight"],
    "Write a short story about a robot that learns to paint.": [
        "the robot found an old box of paints in the corner of the workshop",
        "its first pictures were perfect grey squares with no feeling at all",
        "one evening it watched the sunset and tried to copy the colours",
        "the painting was messy but the robot felt something new inside",
        "from then on the robot painted a new sky every single evening"],
    "Describe a train journey through snowy mountains.": [
        "the train climbs slowly between white peaks and frozen waterfalls",
        "snow lies thick on the pine trees beside the narrow track",
        "passengers press their faces to the windows to see the deep valleys",
        "the carriage is warm and smells of coffee from the dining car",
        "at dusk the mountains glow pink before the lights of the station appear"],
    "Write an announcement that the town library will open on Sundays.": [
        "the town library is pleased to announce that it will now open on Sundays",
        "from next month the doors will open at noon and close at five",
        "families can borrow books and join a reading hour for children",
        "the study room and computers will also be available on Sundays",
        "we thank the volunteers who made the longer opening hours possible"],
    "Give three reasons to keep a paper notebook in a digital age.": [
        "a paper notebook never runs out of battery or needs an update",
        "writing by hand helps people remember what they have written",
        "a notebook keeps private thoughts away from screens and adverts",
        "sketches and arrows are quicker to draw with a pen than with an app",
        "an old notebook becomes a record of ideas that is lovely to read again"],
    "Explain what a budget is to a teenager getting their first job.": [
        "a budget is a plan for how you will spend and save your pay",
        "start by writing down how much money you earn each month",
        "then list what you must pay for such as travel and your phone",
        "put some money aside for savings before you spend on fun things",
        "checking your budget every month helps you avoid running out of money"],
    "Write a review of an imaginary cafe that serves only soup.": [
        "the soup cafe serves six different soups and nothing else",
        "the tomato soup was rich and came with a thick slice of bread",
        "the menu changes every day depending on what the market has",
        "the small room was cosy and the staff were friendly and quick",
        "I would happily return for a bowl of soup on a cold afternoon"],
    "Describe the life cycle of a butterfly in simple words.": [
        "a butterfly starts life as a tiny egg on a leaf",
        "a hungry caterpillar hatches from the egg and eats and grows",
        "the caterpillar then wraps itself in a hard case called a chrysalis",
        "inside the chrysalis its body changes completely",
        "at last a butterfly climbs out and dries its wings in the sun"],
    "Write a message inviting friends to a picnic by the river.": [
        "please join us for a picnic by the river this Saturday",
        "we will meet under the big willow tree near the bridge",
        "bring a blanket and something tasty to share with everyone",
        "there will be games and a swim for anyone who is brave enough",
        "let me know if you can come so that we bring enough lemonade"],
    "Explain why sleep matters for learning new skills.": [
        "sleep gives the brain time to store what it learned during the day",
        "during deep sleep memories are moved into long term storage",
        "people who sleep well after practice often perform better the next day",
        "a tired brain finds it hard to focus and notice mistakes",
        "regular sleep is one of the simplest ways to learn faster"],
    "Write a letter to a future self to be opened in ten years.": [
        "dear future me I wonder where you are reading this letter",
        "today I am worried about exams and excited about the summer",
        "I hope you still make time for friends and long walks",
        "please forgive the mistakes I am making now",
        "I am curious whether you kept the promise to learn a new language"],
    "Describe a busy market in a coastal town at noon.": [
        "at noon the market square is crowded with shoppers and stalls",
        "fishermen shout the prices of the fish they caught at dawn",
        "seagulls circle above hoping for a scrap from the stalls",
        "the smell of salt and grilled sardines fills the warm air",
        "children weave through the crowd with ice creams in their hands"],
    "Write instructions for making a simple paper boat.": [
        "start with a rectangular sheet of paper and fold it in half",
        "fold the top corners down to the middle to make a triangle",
        "fold the bottom strips up on both sides of the triangle",
        "open the shape and flatten it into a square",
        "pull the two sides apart gently and your boat is ready to float"],
    "Explain how rain forms in clouds.": [
        "the sun warms water in seas and lakes and turns it into vapour",
        "the vapour rises and cools as it goes higher into the sky",
        "cool vapour turns into tiny droplets that gather as clouds",
        "the droplets bump together and grow heavier",
        "when the drops are too heavy to float they fall as rain"],
    "Write a short speech for the opening of a small museum of old clocks.": [
        "welcome everyone to the opening of our museum of old clocks",
        "each clock in these rooms has ticked through many lifetimes",
        "some were made by hand in small workshops long ago",
        "we thank the families who lent us their treasured clocks",
        "please take your time because here time itself is on display"],
    "Describe what makes a good team captain.": [
        "a good team captain listens to every player on the team",
        "the captain stays calm when the game is going badly",
        "a good captain works hard in training and sets an example",
        "the captain speaks up for the team when something is unfair",
        "the best captains make every player feel that they matter"],
    "Write a postcard from a holiday on a windy island.": [
        "greetings from the windiest island I have ever visited",
        "the wind nearly blew my hat into the sea on the first day",
        "we walk along the cliffs and watch the puffins every morning",
        "the cottage has a fire and we drink hot chocolate every night",
        "I will show you the photos of the wild waves when I get home"],
    "Explain the rules of a made up board game called Lantern.": [
        "in Lantern each player moves a small lantern across a dark board",
        "on your turn you roll a die and light up that many squares",
        "lit squares let other players see the paths you have found",
        "if you land on a shadow square you lose your next turn",
        "the first lantern to reach the lighthouse in the corner wins the game"],
    "Write a complaint to a shop about a kettle that stopped working.": [
        "I am writing to complain about a kettle that I bought from your shop",
        "the kettle stopped heating water after only two weeks of use",
        "I followed the instructions and never let it boil dry",
        "I would like a replacement kettle or a full refund",
        "I have kept the receipt and the box for you to check"],
    "Describe an old oak tree in a city park.": [
        "the old oak tree stands in the middle of the city park",
        "its trunk is so wide that three children cannot reach around it",
        "squirrels run along its twisted branches all year long",
        "in summer people rest in the cool shade under its leaves",
        "the tree was there long before the streets around the park were built"],
    "Give tips for staying focused while studying at home.": [
        "set up a quiet desk that you use only for studying",
        "put your phone in another room while you work",
        "study in short blocks and take a real break between them",
        "write a clear goal for each session before you start",
        "drink water and open a window to keep your mind fresh"],
    "Write a job advertisement for a night guard at an aquarium.": [
        "the city aquarium is looking for a reliable night guard",
        "the guard will patrol the halls and check the tanks every hour",
        "you must stay calm and alert during long quiet nights",
        "training is given and no experience with fish is needed",
        "the job comes with free entry for your family on weekends"],
    "Explain why bees are important for farmers.": [
        "bees carry pollen from flower to flower as they collect nectar",
        "this pollination lets many crops grow fruit and seeds",
        "apples and almonds depend heavily on busy bees",
        "without bees farmers would harvest much smaller crops",
        "many farmers keep hives near their fields for this reason"],
    "Write a diary entry of a cat watching birds from a window.": [
        "dear diary the birds came back to the feeder this morning",
        "I sat on the windowsill and watched them for hours",
        "my tail twitched every time a sparrow landed on the fence",
        "the glass stopped me from catching even one of them",
        "tomorrow I will watch again because the birds are too tempting"],
    "Describe the first day of spring in a small village.": [
        "on the first day of spring the village wakes to birdsong",
        "snowdrops and crocuses appear along the edges of the green",
        "farmers lead their lambs out into the fresh fields",
        "neighbours open their windows and air out their houses",
        "children play outside until the warm evening light fades"],
    "Write a short biography of an imaginary inventor named Ada Quill.": [
        "Ada Quill was born in a small harbour town and loved taking things apart",
        "as a young woman she built a clock that could wake a whole street",
        "her most famous invention was a pen that never ran out of ink",
        "she opened a workshop where young people could learn to invent",
        "today Ada Quill is remembered as a patient and playful inventor"],
    "Explain how a bicycle gear helps when climbing a hill.": [
        "a bicycle gear changes how far the wheel turns for each push on the pedals",
        "a low gear makes each pedal stroke easier but slower",
        "on a hill the low gear lets your legs keep a steady rhythm",
        "you travel a shorter distance per stroke but you do not tire as fast",
        "at the top you can shift to a higher gear to go faster again"],
    "Write a message to a colleague who is moving to another city.": [
        "it has been a pleasure working beside you these past years",
        "the office will feel quiet without your jokes at lunch",
        "I wish you every success in your new job and your new city",
        "please keep in touch and tell us how you are settling in",
        "you will always have friends here whenever you come back"],
    "Describe a storm at sea from the deck of a fishing boat.": [
        "dark clouds roll in and the sea turns grey and angry",
        "waves crash over the deck of the small fishing boat",
        "the crew tie down the nets and hold on to the rails",
        "rain stings our faces as the wind howls through the ropes",
        "when the storm finally passes the tired crew watch the clouds break"],
    "Write a recipe for a simple vegetable soup.": [
        "chop an onion and two carrots and a stick of celery",
        "soften the vegetables in a little oil in a large pot",
        "add diced potatoes and cover everything with vegetable stock",
        "let the soup simmer gently until the potatoes are tender",
        "season with salt and pepper and serve it hot with bread"],
    "Explain what recycling does with old glass jars.": [
        "old glass jars are collected and taken to a recycling plant",
        "there the glass is sorted by colour and cleaned",
        "the glass is crushed into small pieces called cullet",
        "the cullet is melted in a furnace and shaped into new jars",
        "recycling glass saves energy and keeps jars out of landfill"],
}
I18N = {  # a few topics also in French, German and Spanish, for "answer only in LANGUAGE"
    "Describe the life cycle of a butterfly in simple words.": {
        "fr": ["le papillon commence sa vie comme un petit oeuf sur une feuille",
               "une chenille affamée sort de l'oeuf et mange beaucoup de feuilles",
               "la chenille se transforme ensuite dans une chrysalide",
               "enfin le papillon sort et sèche ses ailes au soleil"],
        "de": ["der schmetterling beginnt sein leben als kleines ei auf einem blatt",
               "eine hungrige raupe schlüpft aus dem ei und frisst viele blätter",
               "danach verwandelt sich die raupe in einer puppe",
               "zuletzt schlüpft der schmetterling und trocknet seine flügel in der sonne"],
        "es": ["la mariposa empieza su vida como un huevo pequeño sobre una hoja",
               "una oruga hambrienta sale del huevo y come muchas hojas",
               "después la oruga se transforma dentro de una crisálida",
               "al final la mariposa sale y seca sus alas al sol"]},
    "Describe the smell and sound of a bakery early in the morning.": {
        "fr": ["la boulangerie sent le pain chaud et le beurre avant le lever du soleil",
               "les fours ronronnent doucement derrière le comptoir",
               "le boulanger chante en formant les petits pains",
               "l'odeur de la cannelle flotte dans la rue encore vide"],
        "de": ["die bäckerei riecht schon vor sonnenaufgang nach warmem brot und butter",
               "die öfen brummen leise hinter der theke",
               "der bäcker summt ein lied während er die brötchen formt",
               "der duft von zimt zieht hinaus auf die leere straße"],
        "es": ["la panadería huele a pan caliente y mantequilla antes del amanecer",
               "los hornos zumban suavemente detrás del mostrador",
               "el panadero canta mientras forma los panecillos",
               "el olor a canela sale a la calle todavía vacía"]},
    "Write a message inviting friends to a picnic by the river.": {
        "fr": ["venez faire un pique-nique avec nous au bord de la rivière samedi",
               "nous nous retrouverons sous le grand saule près du pont",
               "apportez une couverture et quelque chose de bon à partager",
               "dites-moi si vous venez pour que nous apportions assez de limonade"],
        "de": ["kommt am samstag zu unserem picknick am fluss",
               "wir treffen uns unter der großen weide bei der brücke",
               "bringt eine decke und etwas leckeres zum teilen mit",
               "sagt mir bitte ob ihr kommt damit wir genug limonade mitbringen"],
        "es": ["venid a nuestro picnic junto al río este sábado",
               "nos vemos debajo del gran sauce cerca del puente",
               "traed una manta y algo rico para compartir",
               "decidme si venís para llevar bastante limonada"]},
    "Explain how rain forms in clouds.": {
        "fr": ["le soleil réchauffe l'eau des mers et la transforme en vapeur",
               "la vapeur monte et se refroidit dans le ciel",
               "elle forme de minuscules gouttes qui deviennent des nuages",
               "quand les gouttes sont trop lourdes elles tombent en pluie"],
        "de": ["die sonne erwärmt das wasser der meere und macht daraus dampf",
               "der dampf steigt auf und kühlt im himmel ab",
               "so entstehen winzige tropfen die sich zu wolken sammeln",
               "wenn die tropfen zu schwer werden fallen sie als regen"],
        "es": ["el sol calienta el agua de los mares y la convierte en vapor",
               "el vapor sube y se enfría en el cielo",
               "así se forman gotas diminutas que se juntan en nubes",
               "cuando las gotas pesan demasiado caen como lluvia"]},
    "Write a recipe for a simple vegetable soup.": {
        "fr": ["coupez un oignon et deux carottes en petits morceaux",
               "faites revenir les légumes dans un peu d'huile",
               "ajoutez des pommes de terre et couvrez de bouillon",
               "laissez cuire doucement puis servez la soupe bien chaude"],
        "de": ["schneide eine zwiebel und zwei karotten in kleine stücke",
               "dünste das gemüse in etwas öl in einem großen topf",
               "gib kartoffeln dazu und bedecke alles mit brühe",
               "lass die suppe leise köcheln und serviere sie heiß mit brot"],
        "es": ["corta una cebolla y dos zanahorias en trozos pequeños",
               "sofríe las verduras con un poco de aceite en una olla grande",
               "añade patatas y cubre todo con caldo de verduras",
               "deja que la sopa hierva despacio y sírvela caliente con pan"]},
}
QUESTIONS = {  # yes/no questions with their answer, for "choose one of: My answer is yes. / no. / maybe."
    "Is it a good idea to water a cactus every day?": "My answer is no.",
    "Can a paper boat float on a pond for a few minutes?": "My answer is yes.",
    "Should a beginner practise the violin a little every day?": "My answer is yes.",
    "Do bees help farmers grow apples?": "My answer is yes.",
    "Is it possible to drive across the whole city in one minute?": "My answer is no.",
    "Does rain form when water vapour cools in the sky?": "My answer is yes.",
    "Will it rain in this town on the first Monday of next year?": "My answer is maybe.",
    "Can a cat catch a bird through a closed window?": "My answer is no.",
}
STEMS = list(TOPICS)
DEGENERATE_PROBES = (".", "42", "x", "Ok.", "Yes")  # a training task must hold an instruction that these break
_LANG_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}
_KEYWORDS = ["harbor", "lantern", "meadow", "compass", "velvet", "orchard", "granite", "whistle"]
_FORBIDDEN = ["obviously", "basically", "literally", "honestly", "actually"]
_END_PHRASES = ["Is there anything else I can help with?", "Any other questions?", "That is all for now."]

# instruction families: at most one from each group; "alone" ones combine with nothing else
_LAYOUT = {"length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word",
           "detectable_format:multiple_sections", "detectable_format:number_bullet_lists"}
_CASE = {"change_case:english_capital", "change_case:english_lowercase", "change_case:capital_word_frequency"}
_LENGTH = {"length_constraints:number_words", "length_constraints:number_sentences"}
_ALONE = {"detectable_format:constrained_response", "combination:two_responses", "combination:repeat_prompt"}
_JSON = "detectable_format:json_format"  # JSON goes only with what its text can carry (so with something "42" breaks)
_WITH_JSON = {"keywords:existence", "keywords:forbidden_words", "keywords:frequency", "keywords:letter_frequency",
              "punctuation:no_comma", "language:response_language"}
TRAIN_INSTRUCTIONS = sorted(ifv.CHECKERS)


def _compatible(chosen: list[str], cand: str) -> bool:
    if cand in chosen:
        return False
    if cand == _JSON or _JSON in chosen:
        return all(c in _WITH_JSON for c in chosen if c != _JSON) and (cand == _JSON or cand in _WITH_JSON)
    if cand in _ALONE:
        return not chosen
    if any(c in _ALONE for c in chosen):
        return False
    for group in (_LAYOUT, _CASE, _LENGTH):
        if cand in group and any(c in group for c in chosen):
            return False
    if cand == "language:response_language" and any(c in _CASE for c in chosen):
        return False
    if cand in _CASE and "language:response_language" in chosen:
        return False
    if cand == "detectable_format:multiple_sections" and any(c in _CASE for c in chosen):
        return False
    if cand in _CASE and "detectable_format:multiple_sections" in chosen:
        return False
    return True


def build_example(rng: Any, stem: str, ids: list[str]) -> tuple[str, str, list[dict[str, Any]]] | None:
    """(prompt, gold response, kwargs per instruction) for a stem and instruction ids, or None."""
    langs = ["en"] * 2 + sorted(I18N.get(stem, {}))
    lang = rng.choice(langs) if "language:response_language" in ids else "en"
    pool = TOPICS.get(stem, []) if lang == "en" else I18N[stem][lang]  # a yes/no question has no pool
    keep = sorted(rng.sample(range(len(pool)), rng.randint(min(4, len(pool)), len(pool))))
    sentences = [pool[j] for j in keep]  # on the stem's topic, in their order
    kw: dict[str, dict[str, Any]] = {i: {} for i in ids}
    words_in = []  # extra sentences to weave in
    if "keywords:existence" in ids:
        ks = rng.sample(_KEYWORDS, 2)
        kw["keywords:existence"] = {"keywords": ks}
        words_in.append(f"even the {ks[0]} and the {ks[1]} have their place here")
    if "keywords:frequency" in ids:
        k = rng.choice(_KEYWORDS)
        reps = rng.randint(2, 4)
        kw["keywords:frequency"] = {"keyword": k}
        words_in += [f"the {k} comes to mind once more"] * reps
    if "keywords:forbidden_words" in ids:
        kw["keywords:forbidden_words"] = {"forbidden_words": rng.sample(_FORBIDDEN, 2)}
    for w in words_in:  # the keyword sentences go between the topic's sentences
        sentences.insert(rng.randint(0, len(sentences)), w)
    caps = lambda s: s[0].upper() + s[1:]  # noqa: E731
    body_sents = [caps(s) + "." for s in sentences]
    if "detectable_content:number_placeholders" in ids:
        n = rng.randint(1, 3)
        body_sents.append("Please write to " + " and ".join(f"[{p}]" for p in ["name", "address", "date"][:n]) + ".")
        kw["detectable_content:number_placeholders"] = {"num_placeholders": n}
    if "detectable_format:number_highlighted_sections" in ids:
        n = rng.randint(1, 3)
        for j in range(n):
            body_sents[j] = "*" + body_sents[j] + "*"
        kw["detectable_format:number_highlighted_sections"] = {"num_highlights": n}
    # layout
    if "detectable_format:number_bullet_lists" in ids:
        n = rng.randint(2, 4)
        text = "\n".join("* " + " ".join(body_sents[i::n]) for i in range(n))
        kw["detectable_format:number_bullet_lists"] = {"num_bullets": n}
    elif "length_constraints:number_paragraphs" in ids:
        n = rng.randint(2, 3)
        chunks = [body_sents[i::n] for i in range(n)]
        text = "\n***\n".join(" ".join(c) for c in chunks)
        kw["length_constraints:number_paragraphs"] = {"num_paragraphs": n}
    elif "length_constraints:nth_paragraph_first_word" in ids:
        n = rng.randint(2, 3)
        chunks = [body_sents[i::n] for i in range(n)]
        nth = rng.randint(1, n)
        first = chunks[nth - 1][0].strip("*").split()[0].strip(".").lower()
        text = "\n\n".join(" ".join(c) for c in chunks)
        kw["length_constraints:nth_paragraph_first_word"] = {"num_paragraphs": n, "nth_paragraph": nth,
                                                             "first_word": first}
    elif "detectable_format:multiple_sections" in ids:
        n = rng.randint(2, 3)
        spl = rng.choice(["Section", "SECTION"])
        chunks = [body_sents[i::n] for i in range(n)]
        text = "\n\n".join(f"{spl} {j + 1}\n" + " ".join(c) for j, c in enumerate(chunks))
        kw["detectable_format:multiple_sections"] = {"section_spliter": spl, "num_sections": n}
    else:
        text = " ".join(body_sents)
    if "detectable_format:title" in ids:
        text = "<<" + caps(" ".join(pool[0].split()[:rng.randint(3, 6)])) + ">>\n" + text
    if "detectable_content:postscript" in ids:
        marker = rng.choice(["P.S.", "P.P.S"])
        text += f"\n{marker} " + caps(rng.choice(pool)) + "."
        kw["detectable_content:postscript"] = {"postscript_marker": marker}
    if "startend:end_checker" in ids:
        phrase = rng.choice(_END_PHRASES)
        text += "\n" + phrase
        kw["startend:end_checker"] = {"end_phrase": phrase}
    if "change_case:english_lowercase" in ids:
        text = text.lower()
    if "change_case:english_capital" in ids:
        text = text.upper()
    if "change_case:capital_word_frequency" in ids:
        up = rng.randint(1, 3)
        text = " ".join(w.upper() if i < up * 3 and w.isalpha() else w for i, w in enumerate(text.split(" ")))
    if "startend:quotation" in ids:
        text = '"' + text + '"'
    # the "alone" instructions
    if "detectable_format:json_format" in ids:
        text = "```json\n" + json.dumps({"text": " ".join(body_sents)}, indent=2, ensure_ascii=False) + "\n```"
    if "detectable_format:constrained_response" in ids:
        text = QUESTIONS[stem]
    if "combination:two_responses" in ids:
        text = " ".join(body_sents[:2]) + "\n******\n" + " ".join(body_sents[2:4])
    # numeric arguments read off the finished response, so that it follows them
    for i in ids:
        if i == "keywords:frequency":
            c = len(re.findall(re.escape(kw[i]["keyword"]), text, flags=re.IGNORECASE))
            rel = rng.choice(ifv.RELATIONS)
            kw[i].update(relation=rel, frequency=c if rel == "at least" else c + rng.randint(1, 2))
        elif i == "keywords:letter_frequency":
            letter = rng.choice("aeiostnr")
            c = text.lower().count(letter)
            rel = rng.choice(ifv.RELATIONS)
            kw[i] = {"letter": letter, "let_relation": rel,
                     "let_frequency": max(1, c - rng.randint(0, 3)) if rel == "at least" else c + rng.randint(1, 5)}
        elif i == "length_constraints:number_words":  # lower bounds from the training mode's count, upper from lm-eval's
            rel = rng.choice(ifv.RELATIONS)
            kw[i] = {"relation": rel, "num_words": max(1, ifv.count_letter_words(text) - rng.randint(0, 10))
                     if rel == "at least" else ifv.count_words(text) + rng.randint(1, 20)}
        elif i == "length_constraints:number_sentences":
            rel = rng.choice(ifv.RELATIONS)
            kw[i] = {"relation": rel, "num_sentences": max(1, ifv.count_full_sentences(text) - rng.randint(0, 2))
                     if rel == "at least" else ifv.count_sentences(text) + rng.randint(1, 3)}
        elif i == "change_case:capital_word_frequency":
            rel = rng.choice(ifv.RELATIONS)
            kw[i] = {"capital_relation": rel,
                     "capital_frequency": max(1, ifv.count_capital_words(text, 2) - rng.randint(0, 2))
                     if rel == "at least" else ifv.count_capital_words(text) + rng.randint(1, 3)}
        elif i == "language:response_language":
            kw[i] = {"language": lang}
    prompt = stem + " " + " ".join(describe(i, kw[i]) for i in ids)
    if "combination:repeat_prompt" in ids:
        kw["combination:repeat_prompt"] = {"prompt_to_repeat": stem}
        prompt = describe("combination:repeat_prompt", kw["combination:repeat_prompt"]) + " " + stem
        text = stem + "\n" + text
    kwargs = [kw[i] for i in ids]
    if not all(ifv.follows(i, text, k, mode=m) for i, k in zip(ids, kwargs) for m in ifv.MODES):
        return None  # this combination does not hold on the built response: the caller draws another
    return prompt, text, kwargs


def describe(i: str, k: dict[str, Any]) -> str:
    """Our own wording of each instruction."""
    return {
        "change_case:capital_word_frequency": lambda: f"Use {k['capital_relation']} {k['capital_frequency']} words in "
                                                      f"ALL CAPITAL letters.",
        "change_case:english_capital": lambda: "Write the whole response in English using only capital letters.",
        "change_case:english_lowercase": lambda: "Write the whole response in English using only lowercase letters.",
        "combination:repeat_prompt": lambda: "Begin by repeating the following request word for word, then answer it:",
        "combination:two_responses": lambda: "Give two different answers separated by a line of six asterisks (******).",
        "detectable_content:number_placeholders": lambda: f"Include at least {k['num_placeholders']} placeholders in "
                                                          f"square brackets like [name].",
        "detectable_content:postscript": lambda: f"End with a postscript that starts with {k['postscript_marker']}",
        "detectable_format:constrained_response": lambda: "Reply only with one of: My answer is yes. / My answer is no. "
                                                          "/ My answer is maybe.",
        "detectable_format:json_format": lambda: "Format the entire output as JSON.",
        "detectable_format:multiple_sections": lambda: f"Organise it in {k['num_sections']} parts, each headed "
                                                       f"{k['section_spliter']} X.",
        "detectable_format:number_bullet_lists": lambda: f"Use exactly {k['num_bullets']} markdown bullet points (* item).",
        "detectable_format:number_highlighted_sections": lambda: f"Mark at least {k['num_highlights']} parts with "
                                                                 f"*single asterisks*.",
        "detectable_format:title": lambda: "Put a title in double angle brackets, like <<my title>>.",
        "keywords:existence": lambda: f"Mention the words {' and '.join(k['keywords'])}.",
        "keywords:forbidden_words": lambda: f"Never use the words {' or '.join(k['forbidden_words'])}.",
        "keywords:frequency": lambda: f"Use the word {k['keyword']} {k['relation']} {k['frequency']} times.",
        "keywords:letter_frequency": lambda: f"The letter {k['letter']} must appear {k['let_relation']} "
                                             f"{k['let_frequency']} times.",
        "language:response_language": lambda: f"Answer only in {_LANG_NAMES[k['language']]}.",
        "length_constraints:nth_paragraph_first_word": lambda: f"Write {k['num_paragraphs']} paragraphs separated by a "
                                                               f"blank line; paragraph {k['nth_paragraph']} must start "
                                                               f"with the word {k['first_word']}.",
        "length_constraints:number_paragraphs": lambda: f"Write {k['num_paragraphs']} paragraphs separated by ***.",
        "length_constraints:number_sentences": lambda: f"Use {k['relation']} {k['num_sentences']} sentences.",
        "length_constraints:number_words": lambda: f"Use {k['relation']} {k['num_words']} words.",
        "punctuation:no_comma": lambda: "Do not use any commas.",
        "startend:end_checker": lambda: f"Finish with the exact phrase: {k['end_phrase']}",
        "startend:quotation": lambda: "Wrap the whole response in double quotation marks.",
    }[i]()


def read_ifeval(path: str) -> list[dict[str, Any]]:
    """The IFEval test prompts from a JSON-lines file, a folder holding input_data.jsonl, or a hub name."""
    if os.path.isdir(path):
        path = os.path.join(path, "input_data.jsonl")
    if os.path.isfile(path):
        rows = read_jsonl(path)  # a bad line: its file and number
    elif looks_local(path):
        raise not_found_locally(path, "env.path")
    else:
        try:
            import datasets

            with quiet_hub():
                rows = list(datasets.load_dataset(path, split="train"))
        except Exception as e:  # noqa: BLE001 - no hub, no such dataset: one clear line
            raise EnvError(f"cannot load IFEval from {path!r} ({type(e).__name__}): give a local copy with "
                           f"{path_hint('ifeval', '../shared/data/ifeval')}") from None
    need = ("prompt", "instruction_id_list", "kwargs")
    if not rows or any(k not in rows[0] for k in need):
        raise EnvError(f"{path!r} is not IFEval data: rows need {need}")
    return rows


class IFEvalSource(TaskSource):
    def __init__(self, path: str = "google/IFEval", seed: int = 0, max_instructions: int = 3):
        self.name, self.seed, self.path = "ifeval", seed, path
        self.rows = read_ifeval(path)
        self.test_prompts = {r["prompt"].strip() for r in self.rows}
        blob = "\n".join(self.test_prompts).lower()
        self.stems = [s for s in STEMS if s.lower().rstrip(".") not in blob]  # never a stem of the test set
        self.questions = [q for q in QUESTIONS if q.lower().rstrip("?") not in blob]
        self.max_instructions = max_instructions

    def size(self, split: str = "train") -> int | None:
        return len(self.rows) if split == "heldout" else None

    def task(self, index: int, split: str = "train") -> Task:
        if split == "heldout":
            r = self.rows[index % len(self.rows)]
            ref = {"instruction_id_list": list(r["instruction_id_list"]), "kwargs": [dict(k) for k in r["kwargs"]],
                   "prompt": r["prompt"]}
            return Task(f"ifeval/{r.get('key', index)}", r["prompt"], ref,
                        {"source": "ifeval", "split": split, "index": index % len(self.rows)})
        for attempt in range(10_000):
            rng = item_rng(self.name, self.seed, split, index, attempt)
            ids: list[str] = []
            for _ in range(rng.randint(1, self.max_instructions)):
                options = [c for c in TRAIN_INSTRUCTIONS if _compatible(ids, c)]
                if not options:
                    break
                ids.append(rng.choice(options))
            alone = ids == ["detectable_format:constrained_response"]
            built = build_example(rng, rng.choice(self.questions if alone else self.stems), ids)
            if built is None:
                continue
            prompt, gold, kwargs = built
            if any(all(ifv.follows(i, probe, k) for i, k in zip(ids, kwargs)) for probe in DEGENERATE_PROBES):
                continue  # only "negative" instructions ("no commas", "less than N words"): silence would follow them
            if content_split(prompt) != "train" or prompt.strip() in self.test_prompts:
                continue
            ref = {"instruction_id_list": ids, "kwargs": kwargs, "prompt": prompt}
            return Task(f"ifeval-train/{self.seed}/{index}", prompt, ref,
                        {"source": "ifeval-procedural", "split": split, "index": index, "gold": gold})
        raise EnvError(f"could not build training task {index}")


class IFEvalEnv(TextEnv):
    """``rlvr/IFEval-v0``. Args: path (local file/folder or hub name), seed, reward ("all" or
    "fraction"), mode ("train": the training reward, the default whatever the split; "benchmark":
    lm-eval's definition, which ``algos.evaluate`` selects), correct_weight, format_weight,
    format_mode, split, prompt_format, system_prompt."""

    def __init__(self, path: str = "google/IFEval", seed: int = 0, reward: str = "all", mode: str = "train",
                 correct_weight: float = 1.0, format_weight: float = 0.1, format_mode: str = "soft",
                 split: str = "train", prompt_format: str = "chat", system_prompt: str | None = IFEVAL_INSTRUCTION,
                 render_mode: str | None = None):
        if reward not in ("all", "fraction"):
            raise EnvError(f"reward must be 'all' or 'fraction', got {reward!r}")
        if mode not in ifv.MODES:
            raise EnvError(f"mode must be one of {ifv.MODES} ('train': the reward; 'benchmark': lm-eval's definition), "
                           f"got {mode!r}")
        self.mode = mode
        rubric = Rubric().add_verifier("correct", ifv.IFEvalVerifier(reward, mode), correct_weight)
        if format_weight > 0:
            rubric.add_verifier("format", FormatVerifier(format_mode), format_weight)
        super().__init__(IFEvalSource(path, seed), rubric, split=split, prompt_format=prompt_format,
                         system_prompt=system_prompt, render_mode=render_mode)

    def gold_completion(self, task: Task) -> str:
        gold = task.metadata.get("gold")
        if gold is None:
            raise EnvError(f"task {task.id} has no gold response (IFEval's test prompts come without one)")
        return f"<think>\nFollow each instruction.\n</think>\n<answer>{gold}</answer>"
