"""Synthetic chest CT with known lungs and COVID-19 lesions: training data and fixtures.

    case = generate_case(seed, SynthParams(matrix=512, covid=True))
    write_case(case, "out/case_000")
"""

from covidct.synth.case import SynthCase, generate_case, slice_labels_rule
from covidct.synth.params import FINDINGS, KERNELS, ResolvedParams, SynthParams
from covidct.synth.seeds import case_seed
from covidct.synth.writers import write_case

__all__ = [
    "FINDINGS", "KERNELS", "ResolvedParams", "SynthCase", "SynthParams", "case_seed",
    "generate_case", "slice_labels_rule", "write_case",
]
