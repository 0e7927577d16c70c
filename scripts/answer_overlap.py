#!/usr/bin/env python3
"""How close each arm's spoken (e2e) answers come to the base model's typed ones, finer than agreement.

`kioku eval` counts a spoken answer as agreeing when its content-word F1 against the base
model's typed answer is at least 0.5 (`answer_overlap` and `answers_agree` in
src/eval/metrics.rs). With 40 questions one answer is 2.5 points, so this script averages the
F1 itself, which moves with every word, and gives each arm's mean change from the base arm of
the same report, over any number of reports (docs/ADAPTATION.md, "Every adaptation costs spoken
answers a little"). It re-implements that F1 exactly: same normalisation, stopwords and 24
compared words.

    scripts/answer_overlap.py REPORT.json...
"""
import json
import sys
from collections import defaultdict

STOPWORDS = set("""a an the is are was were be been of to in on at for and or it it's its this that with as by
i you your my me we can do does what which there here so if but not have has will would could should about
from into also some any very just than then they their them he she his her our am sure yes no okay ok let's
let i'm i'd i'll you're here's there's""".split())
NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
           "sixteen seventeen eighteen nineteen twenty").split()
COMPARED_WORDS = 24


def normalized_words(text):
    kept = "".join(c if c.isalnum() or c == "'" or c.isspace() else " " for c in text.lower())
    return [NUMBERS[int(w)] if w.isdecimal() and int(w) <= 20 else w for w in kept.split()]


def content_words(text):
    return {w for w in normalized_words(text)[:COMPARED_WORDS] if w not in STOPWORDS}


def overlap(a, b):
    a, b = content_words(a), content_words(b)
    if not a and not b:
        return 1.0
    common = len(a & b)
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def main(paths):
    changes = defaultdict(list)
    for path in paths:
        with open(path) as f:
            arms = json.load(f)["arms"]
        if arms[0]["arm"]["name"] != "base" or not arms[0]["items"]["e2e_qa"]:
            sys.exit(f"{path}: the first arm must be `base`, with spoken answers")
        typed = {item["id"]: item["answer"] for item in arms[0]["items"]["text_qa"]}
        means = {}
        for arm in arms:
            spoken = arm["items"]["e2e_qa"]
            means[arm["arm"]["name"]] = sum(overlap(i["answer"], typed[i["id"]]) for i in spoken) / len(spoken)
            print(f"{path}\t{arm['arm']['name']}\t{means[arm['arm']['name']]:.3f}")
        for name, mean in means.items():
            if name != "base":
                changes[name].append(mean - means["base"])
    print("\narm\treports\tmean change from base\treports above base")
    for name, deltas in changes.items():
        above = sum(d > 0 for d in deltas)
        print(f"{name}\t{len(deltas)}\t{sum(deltas) / len(deltas):+.3f}\t{above}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
