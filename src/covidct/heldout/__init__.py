"""A second synthetic appearance family, for testing only: the held-out family.

Training never sees it (tests/test_heldout.py checks that no training module imports
this package): its anatomy, lesion shape and texture, confounders, noise and kernel
models are written apart from `covidct.synth` (the training family), so the gap between
the models' figures on the two families measures how far they learned the generator
rather than the disease (issue 11; benchmarks/heldout_family.py).

    from covidct.heldout import HeldoutParams, generate_heldout_case
    case = generate_heldout_case(7, HeldoutParams(matrix=256, covid=False,
                                                  confounders=("effusion",)))

or `covidct synth OUT --family heldout`.
"""

from covidct.heldout.case import GENERATOR, generate_heldout_case
from covidct.heldout.params import CONFOUNDERS, HeldoutParams

__all__ = ["CONFOUNDERS", "GENERATOR", "HeldoutParams", "generate_heldout_case"]
