"""Per-case seeds: case i of a corpus with seed S is reproducible on its own."""

from __future__ import annotations

import numpy as np


def case_seed(corpus_seed: int, index: int) -> int:
    """The seed of case `index` of a corpus generated with `corpus_seed` (31-bit int)."""
    state = np.random.SeedSequence([int(corpus_seed), int(index)]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF
