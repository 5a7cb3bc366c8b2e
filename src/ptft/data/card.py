"""What every data card (data/{name}/card.json) shares, whatever wrote the set: generated (ptft.data.tasksets),
downloaded from the hub (ptft.hubdata) or read from local files (ptft.localdata).
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from ptft.tasks import TaskFamily

CARD_FILE = "card.json"


def length_stats(texts: Sequence[str]) -> dict[str, float]:
    """Mean, least and most words of the texts, for data cards (empty for no texts: a hub set without a test split)."""
    if not texts:
        return {}
    lengths = [len(t.split()) for t in texts]
    return {"mean_words": round(statistics.fmean(lengths), 2), "min_words": min(lengths), "max_words": max(lengths)}


def target_summary(family: TaskFamily, splits: Mapping[str, Sequence[Mapping[str, str]]]) -> dict[str, Any]:
    """The card's summary of each split's targets: {"label_distribution": {split: {label word: records}}} for a
    classification family, else {"target_length": {split: length_stats of the targets}}."""
    target = family.target_field
    if family.label_words:
        return {"label_distribution": {split: {w: sum(r[target] == w for r in rows) for w in family.label_words}
                                       for split, rows in splits.items()}}
    return {"target_length": {split: length_stats([r[target] for r in rows]) for split, rows in splits.items()}}
