"""Regenerate ensemble/sample_data: a small SAMPLE in the course's file formats, written for this
project (templated sentences, not course data), so `ensemble run` works with no data folder."""
from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "ensemble" / "sample_data"
rng = random.Random(224)

ADJ = {0: ["dreadful", "unwatchable", "a total mess"], 1: ["dull", "tedious", "forgettable"],
       2: ["ordinary", "uneven", "passable"], 3: ["charming", "engaging", "well made"],
       4: ["brilliant", "a triumph", "wonderful"]}
THING = ["the film", "the acting", "the script", "the ending", "the soundtrack", "this movie", "the story"]
TOPIC = ["learn python", "lose weight", "start a business", "improve my english", "become a pilot",
         "save money", "write a novel", "get into harvard", "stop snoring", "train a puppy"]
ASK = ["What is the best way to {}?", "How can I {}?", "How do I {} quickly?", "What should I do to {}?"]
SCENE = [("A man is playing a guitar.", "A man plays the guitar.", "A woman is slicing an onion."),
         ("Two dogs run on the grass.", "Two dogs are running through a field.", "A cat sleeps on a sofa."),
         ("A child rides a bike.", "A kid is riding a bicycle.", "The market fell sharply today."),
         ("The president met the prime minister.", "The prime minister met with the president.", "A bird sits on a wire."),
         ("A woman is cooking pasta.", "A woman cooks noodles.", "Two men are playing chess.")]


def hid(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:25]


def sst_rows(n, split):
    rows = []
    for i in range(n):
        label = rng.randrange(5)
        s = f"{rng.choice(THING).capitalize()} is {rng.choice(ADJ[label])} ."
        rows.append((hid("sst", split, i), " " + s, label))
    return rows


def quora_rows(n, split):
    rows = []
    for i in range(n):
        t = rng.choice(TOPIC)
        a = rng.choice(ASK).format(t)
        dup = rng.random() < 0.5
        b = rng.choice(ASK).format(t if dup else rng.choice([x for x in TOPIC if x != t]))
        if i % 11 == 3:
            a = f'"Is ""{t}"" hard?"'.strip('"')  # a field with quotes inside, doubled on write
        rows.append((str(rng.randrange(400000)), hid("quora", split, i), a, b, 1 if dup else 0))
    return rows


def sts_rows(n, split):
    rows = []
    for i in range(n):
        a, para, other = rng.choice(SCENE)
        kind = rng.randrange(3)
        b = [para, other, a][kind]
        score = [rng.choice([3.6, 4.0, 4.4]), rng.choice([0.0, 0.4, 0.8]), 5.0][kind]
        rows.append((str(rng.randrange(9000)), hid("sts", split, i), a, b, score))
    return rows


def write(name, header, rows):
    with open(OUT / name, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 48), ("dev", 24), ("test-student", 16)):
        sst = sst_rows(n, split)
        if split == "test-student":
            write("ids-sst-test-student.csv", ["", "", "id", "sentence"],
                  [(i, f"{i}.0", r[0], r[1]) for i, r in enumerate(sst)])
        else:
            write(f"ids-sst-{split}.csv", ["", "id", "sentence", "sentiment"],
                  [(i, r[0], r[1], r[2]) for i, r in enumerate(sst)])
        q, s = quora_rows(n, split), sts_rows(n, split)
        if split == "test-student":
            write("quora-test-student.csv", ["", "id", "sentence1", "sentence2"], [r[:4] for r in q])
            write("sts-test-student.csv", ["", "id", "sentence1", "sentence2"], [r[:4] for r in s])
        else:
            write(f"quora-{split}.csv", ["", "id", "sentence1", "sentence2", "is_duplicate"],
                  [r[:4] + (f"{float(r[4])}",) for r in q])
            write(f"sts-{split}.csv", ["", "id", "sentence1", "sentence2", "similarity"],
                  [r[:4] + (f"{float(r[4])}",) for r in s])
    (OUT / "README.md").write_text(
        "# SAMPLE data (not course data)\n\nA few dozen templated examples per task in the course's file "
        "formats, written for ensemble so that `ensemble run` works anywhere. Scores on it mean nothing; "
        "every output made from it is labelled as a sample. Regenerate with scripts/make_sample_data.py.\n")


if __name__ == "__main__":
    main()
