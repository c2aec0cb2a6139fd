"""Write the project's synthetic social-media posts, coded for human flourishing, into the package.

    PYTHONPATH=. python scripts/make_sample_tweets.py

Each post is made of one sentence per present well-being dimension, written at that
dimension's intensity (low, medium or high), shuffled, sometimes with a neutral sentence; some
posts express no dimension at all. The coding is true of the text by construction. It is
written as the research's answers.csv writes its codings: a Python-style dict of the present
dimensions in lower case, in no particular order (``{ 'happiness' : 'high' }``, ``{}`` for
none), including the spellings that differ from the codebook's (``financial/material worry``,
``mastery (ability, capability)``), which the task's aliases read. The text is written for
this project; none of it comes from the research's tweets.

Output (deterministic from SEED): llmscisci_cfg/assets/sample/tweets.csv, the table behind
``builtin:sample_tweets`` (columns as the research's tweets.csv, plus its coding ``answer``).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20250318
N_POSTS = 120
OUT = Path(__file__).resolve().parents[1] / "llmscisci_cfg" / "assets" / "sample"
COLUMNS = ["tweet_lang", "message_id", "tweet_text", "answer"]
LEVELS = ("low", "medium", "high")
LEVEL_WEIGHTS = (2, 1, 5)  # intensities drawn as in the research's codings: mostly high
#: How many dimensions a post expresses, and how often.
COUNT_WEIGHTS = {0: 10, 1: 40, 2: 30, 3: 15, 4: 5}
EMPTY = {29: ""}  # row index -> an empty post (dropped by the data stage)

# dimension (as the gold spells it) -> one sentence per level: low, medium, high
BANK: dict[str, tuple[str, str, str]] = {
    "happiness": (
        "Kind of a nice day today.",
        "Really happy with how the weekend went.",
        "Best day ever, I am so incredibly happy right now!!",
    ),
    "expressing gratitude": (
        "Thanks to the driver who waited for me this morning.",
        "Grateful for my coworkers this week.",
        "Endlessly thankful to everyone who showed up for me, I owe you all so much.",
    ),
    "expressing optimism": (
        "Maybe next week will go better.",
        "Things are looking up for the team.",
        "I just know great things are coming for all of us this year!",
    ),
    "anxiety": (
        "A bit nervous about the meeting tomorrow.",
        "My anxiety has been acting up all week before the exam.",
        "My heart is racing and I cannot stop worrying about everything, I can't breathe.",
    ),
    "loneliness": (
        "Quiet weekend, nobody around.",
        "Feeling lonely since my roommate moved out.",
        "Nobody has spoken to me in weeks. I am completely alone.",
    ),
    "financial/material worry": (
        "Rent went up a little again.",
        "Worried about paying the bills this month.",
        "No idea how we will pay rent, the fridge is empty and the car just broke down.",
    ),
    "mastery (ability, capability)": (
        "Fixed the dripping tap myself, not bad.",
        "Finally got the hang of the new software at work.",
        "Rebuilt the whole engine on my own. I can do anything I set my mind to.",
    ),
    "belonging to society": (
        "Nice to see the neighbours at the market.",
        "Proud to be part of this community.",
        "This town is my family and I belong here with every one of you.",
    ),
    "having hope": (
        "Hoping the rain stops before the game.",
        "Still hopeful the new treatment will work.",
        "I have never had more hope for my kids and their future.",
    ),
    "expressing empathy": (
        "That sounds hard for them.",
        "My heart goes out to the families hit by the flood.",
        "I feel every bit of your pain, friend, and I am here for you day and night.",
    ),
    "fear of future": (
        "Not sure what next year holds.",
        "Scared about what the layoffs will mean for us.",
        "Terrified about the future, everything feels like it is falling apart.",
    ),
    "feeling pain": (
        "Back is a little sore after gardening.",
        "My knee has been hurting all day.",
        "The pain is unbearable tonight, I cannot sleep at all.",
    ),
    "belief in god": (
        "Said a quick prayer on the way in.",
        "My faith keeps me going.",
        "God is my rock and my everything, always.",
    ),
    "expressing job satisfaction": (
        "Work was fine today.",
        "I enjoy my new job more than I expected.",
        "I love my job, I get paid to do what I would do for free!",
    ),
    "having energy": (
        "Got some energy back after coffee.",
        "Feeling energetic after a good night's sleep.",
        "So much energy today, I ran ten miles and cleaned the whole house!",
    ),
    "depression": (
        "A bit down today.",
        "Everything feels grey lately and I do not enjoy anything.",
        "I can't get out of bed anymore, nothing matters and I feel empty.",
    ),
    "ptsd (post-traumatic stress disorder)": (
        "Loud bangs still make me jump.",
        "The nightmares about the crash came back this week.",
        "Every night I relive the attack, flashbacks all day, I can't escape it.",
    ),
    "volunteering": (
        "Helped out at the school fair for an hour.",
        "Spent Saturday volunteering at the food bank.",
        "Volunteering at the shelter every week is the best thing I do with my life.",
    ),
}
NEUTRAL = [
    "Traffic on the bridge again.",
    "New phone arrived today.",
    "The train was on time for once.",
    "Watching the match later.",
    "Pasta for dinner tonight.",
    "Moved the meeting to Thursday.",
]


def coding(picked: dict[str, str]) -> str:
    """``picked`` written as answers.csv writes codings: ``{ 'a' : 'high', 'b' : 'low' }``."""
    if not picked:
        return "{}"
    return "{ " + ", ".join(f"'{d}' : '{level}'" for d, level in picked.items()) + " }"


def post(rng: random.Random) -> tuple[str, str]:
    """One post and its coding."""
    count = rng.choices(list(COUNT_WEIGHTS), weights=list(COUNT_WEIGHTS.values()))[0]
    dims = rng.sample(list(BANK), count)
    picked = {d: rng.choices(LEVELS, weights=LEVEL_WEIGHTS)[0] for d in dims}
    sentences = [BANK[d][LEVELS.index(level)] for d, level in picked.items()]
    if not sentences or rng.random() < 0.3:
        sentences.append(rng.choice(NEUTRAL))
    rng.shuffle(sentences)
    return " ".join(sentences), coding(picked)


def build(seed: int = SEED, n: int = N_POSTS) -> list[dict[str, str]]:
    """Every row of tweets.csv, deterministic from ``seed``; every dimension of the bank occurs."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text, answer = post(rng)
        if i in EMPTY:
            text, answer = EMPTY[i], ""
        rows.append(
            {
                "tweet_lang": "en",
                "message_id": str(1_700_000_000_000_000_000 + 7_919 * (i + 1)),
                "tweet_text": text,
                "answer": answer,
            }
        )
    return rows


def write(out: Path = OUT) -> None:
    rows = build()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tweets.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} posts to {out}")


if __name__ == "__main__":
    write()
