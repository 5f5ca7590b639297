"""Evaluating the analysis on real studies listed in a manifest (`covidct evaluate --manifest`).

Manifest format (JSON)
----------------------
An object with a header and a list of studies::

    {
      "description": "optional free text",
      "root": "/data/hospital-ct",
      "studies": [
        {"name": "patient_017", "path": "patient_017/CT",
         "expected": "covid-suspected",
         "slice_labels": "labels/patient_017.csv", "lobe_labels": true,
         "reference_mask": "./reference/patient_017_lungs.nii.gz",
         "role": "validation"}
      ]
    }

Header keys: ``studies`` (required), ``root``, ``description``, ``version``. A bare list of
studies is accepted too (root: the manifest's folder).

Study keys:

- ``name`` (required, unique): the study's name in the report.
- ``path`` (required): a DICOM folder, NIfTI, NRRD or MHA file.
- ``expected`` (required): the decision the analysis should reach: ``covid-suspected``,
  ``not-suspected``, ``indeterminate``, ``not-covid-suspected`` (not-suspected or
  indeterminate) or ``any`` (every decision matches; e.g. a pneumonia that is not COVID-19).
- ``slice_labels`` (optional): a CSV with columns ``image_position_z_mm`` and ``infection``
  (0/1). Each row is matched to the volume slice whose z position
  (`Volume.slice_positions_mm`) lies within 0.5 mm; a row matching no slice, or two rows
  matching one slice, is an error. Slices without a row are not scored.
- ``lobe_labels`` (optional, default false): the same CSV also holds lobe columns LLL, LUL,
  RLL, RML, RUL (0/1); the report carries the count of labelled slices per lobe, and a
  note (and a logged warning) when the lobes' craniocaudal order contradicts anatomy, the
  sign of label rows in reversed slice order (`covidct.train.label_order`).
- ``reference_mask`` (optional): a label map on the CT's voxel grid (NIfTI uint8): 1 right
  lung, 2 left lung, 3 airway; labels >= 3 are not lung. A reference file that does not
  exist (yet) is skipped with a note, not an error.
- ``role`` (optional): ``validation`` or ``training-allowed`` (what the data may be used for).

Paths: absolute paths are used as they are; paths starting with ``./`` or ``../`` are
relative to the manifest file; any other relative path is relative to the data root. The
root is, in order of precedence: the `root` argument (``--root DIR``), the environment
variable ``COVIDCT_REAL_DATA``, the header's ``root`` (relative to the manifest file), the
manifest's folder.

Per study the evaluation reports: the decision (label, reason, positive-slice ratio,
threshold) and whether it matches ``expected``; lung Dice (any lung vs reference labels 1|2)
and right/left Dice for the model and for the HU-threshold baseline
(`covidct.train.baseline.threshold_lungs`); airway Dice vs reference label 3 when the
analysis result carries an ``airway_mask``; slice AUC, sensitivity and specificity at the
model card's slice threshold over the labelled slices, where **a slice without predicted
lung counts with probability 0** (so a missed lung shows as missed infection); and the
time taken. The summary pools the labelled slices of all studies into one AUC, averages the
Dice values and counts the decisions that match. Analysis outputs stay in memory.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidct.decision import COVID_SUSPECTED, INDETERMINATE, NOT_SUSPECTED
from covidct.errors import ConfigError, DataError
from covidct.train.label_order import lobe_order_contradiction
from covidct.train.metrics import dice, roc_auc, sensitivity_specificity
from covidct.volume import Volume

logger = logging.getLogger(__name__)

ROOT_ENV = "COVIDCT_REAL_DATA"
NOT_COVID_SUSPECTED = "not-covid-suspected"
ANY = "any"
EXPECTED_LABELS = (COVID_SUSPECTED, NOT_SUSPECTED, INDETERMINATE, NOT_COVID_SUSPECTED, ANY)
ROLES = ("validation", "training-allowed")
LOBES = ("LLL", "LUL", "RLL", "RML", "RUL")
HEADER_KEYS = frozenset({"studies", "root", "description", "version"})
STUDY_KEYS = frozenset({"name", "path", "expected", "slice_labels", "lobe_labels",
                        "reference_mask", "role"})
Z_TOLERANCE_MM = 0.5
RIGHT, LEFT, AIRWAY = 1, 2, 3


@dataclass(frozen=True)
class StudySpec:
    """One manifest entry with its paths resolved."""

    name: str
    path: Path
    expected: str
    slice_labels: Path | None = None
    lobe_labels: bool = False
    reference_mask: Path | None = None
    role: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: where it lies, the data root its paths resolve against, studies."""

    path: Path
    root: Path
    studies: tuple[StudySpec, ...]
    description: str | None = None

    def select(self, names: Sequence[str] | None) -> Manifest:
        """The manifest restricted to `names` (all when None or empty), in manifest order."""
        if not names:
            return self
        known = [s.name for s in self.studies]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"--only {', '.join(unknown)}: no such study in {self.path}; "
                              f"the manifest has: {', '.join(known)}.")
        wanted = set(names)
        return Manifest(self.path, self.root, tuple(s for s in self.studies if s.name in wanted),
                        self.description)


@dataclass(frozen=True)
class SliceLabels:
    """Radiologists' slice labels matched onto a volume's slices."""

    infection: np.ndarray  # (z,) int8: 1 infected, 0 not, -1 no row for this slice
    lobe_counts: dict[str, int] | None = None  # labelled slices per lobe
    lobes: dict[str, np.ndarray] | None = None  # lobe -> (z,) int8 like infection

    @property
    def labelled(self) -> np.ndarray:
        return self.infection >= 0


@dataclass(frozen=True)
class StudyEvaluation:
    """What the analysis of one study found, against what the manifest expects."""

    spec: StudySpec
    shape: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    decision: str | None = None
    reason: str | None = None
    positive_slice_ratio: float | None = None
    case_threshold: float | None = None
    slice_threshold: float | None = None
    matches_expected: bool | None = None
    lung_dice: dict[str, float | None] | None = None  # model: dice, dice_right, dice_left
    baseline_dice: dict[str, float | None] | None = None
    airway_dice: float | None = None
    lung_volume_cm3: dict[str, float | None] = field(default_factory=dict)
    slice_prob: np.ndarray | None = field(default=None, repr=False)  # (z,), 0 without lung
    slice_has_lung: np.ndarray | None = field(default=None, repr=False)
    slice_labels: SliceLabels | None = field(default=None, repr=False)
    slice_auc: float | None = None
    slice_sensitivity: float | None = None
    slice_specificity: float | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    localization: dict[str, Any] | None = None  # covidct.train.localization

    def scored_slices(self) -> tuple[np.ndarray, np.ndarray]:
        """(prob, infected) of the labelled slices; prob 0 where no lung was predicted."""
        if self.slice_labels is None or self.slice_prob is None:
            return np.zeros(0), np.zeros(0, bool)
        keep = self.slice_labels.labelled
        return self.slice_prob[keep], self.slice_labels.infection[keep] == 1

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        labels = self.slice_labels
        prob, infected = self.scored_slices()
        return {
            "name": s.name, "path": str(s.path), "expected": s.expected, "role": s.role,
            "reference_mask": None if s.reference_mask is None else str(s.reference_mask),
            "slice_labels_file": None if s.slice_labels is None else str(s.slice_labels),
            "shape": None if self.shape is None else list(self.shape),
            "spacing_mm": None if self.spacing_mm is None else [_round(v) for v in self.spacing_mm],
            "decision": self.decision, "reason": self.reason,
            "matches_expected": self.matches_expected,
            "positive_slice_ratio": _round(self.positive_slice_ratio),
            "case_threshold": self.case_threshold, "slice_threshold": self.slice_threshold,
            "lung_dice": self.lung_dice, "baseline_dice": self.baseline_dice,
            "airway_dice": _round(self.airway_dice),
            "lung_volume_cm3": self.lung_volume_cm3,
            "slices": {
                "labelled": int(labels.labelled.sum()) if labels is not None else 0,
                "infected": int(infected.sum()),
                "auc": _round(self.slice_auc), "sensitivity": _round(self.slice_sensitivity),
                "specificity": _round(self.slice_specificity),
                "lobe_counts": labels.lobe_counts if labels is not None else None,
                "prob": None if self.slice_prob is None
                else [round(float(p), 4) for p in self.slice_prob],
                "has_lung": None if self.slice_has_lung is None
                else [int(v) for v in self.slice_has_lung],
                "infection": None if labels is None else [int(v) for v in labels.infection],
            },
            "scored_slice_count": int(prob.size),
            "localization": self.localization,
            "notes": list(self.notes), "error": self.error,
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
        }


# --------------------------------------------------------------------------- manifest


def load_manifest(path: str | Path, root: str | Path | None = None, *,
                  environ: Mapping[str, str] | None = None) -> Manifest:
    """Parse and validate a manifest (see the module docstring); paths come back resolved.

    `root` overrides the data root; else $COVIDCT_REAL_DATA (read from `environ`, default
    os.environ), else the header's root, else the manifest's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Manifest {path} does not exist (or is not a file); give the path "
                          "of a JSON manifest, e.g. benchmarks/real_manifest.json.")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Manifest {path} is not valid JSON ({exc}); fix the file.") from exc
    if isinstance(doc, list):
        doc = {"studies": doc}
    if not isinstance(doc, dict):
        raise ConfigError(f"Manifest {path} must hold a JSON object with a 'studies' list (or a "
                          f"bare list of studies); got a {type(doc).__name__}.")
    unknown = sorted(set(doc) - HEADER_KEYS)
    if unknown:
        raise ConfigError(f"Manifest {path}: unknown header key(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(HEADER_KEYS))}.")
    studies = doc.get("studies")
    if not isinstance(studies, list) or not studies:
        raise ConfigError(f"Manifest {path}: 'studies' must be a non-empty list of objects.")
    base = path.resolve().parent
    env = os.environ if environ is None else environ
    header_root = doc.get("root")
    if header_root is not None and not isinstance(header_root, str):
        raise ConfigError(f"Manifest {path}: 'root' must be a string path; got {header_root!r}.")
    if root is not None:
        data_root = Path(root)
    elif env.get(ROOT_ENV):
        data_root = Path(env[ROOT_ENV])
    elif header_root:
        data_root = base / header_root
    else:
        data_root = base
    data_root = Path(os.path.normpath(data_root.resolve()))
    specs = tuple(_parse_study(entry, i, path, base, data_root) for i, entry in enumerate(studies))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"Manifest {path}: study names must be unique; repeated: "
                          f"{', '.join(duplicates)}.")
    description = doc.get("description")
    return Manifest(path=path, root=data_root, studies=specs,
                    description=str(description) if description is not None else None)


def resolve_entry_path(value: str, manifest_dir: Path, root: Path) -> Path:
    """Absolute: as is; './' or '../': against the manifest's folder; else against root."""
    p = Path(value)
    if p.is_absolute():
        return p
    base = manifest_dir if value.startswith(("./", "../", ".\\", "..\\")) else root
    return Path(os.path.normpath(base / p))


def _parse_study(entry: Any, index: int, manifest: Path, base: Path, root: Path) -> StudySpec:
    where = f"Manifest {manifest}, study #{index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: each study must be a JSON object; got {entry!r}.")
    if isinstance(entry.get("name"), str):
        where += f" ({entry['name']})"
    unknown = sorted(set(entry) - STUDY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(STUDY_KEYS))}.")
    for key in ("name", "path", "expected"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ConfigError(f"{where}: '{key}' is required and must be a non-empty string.")
    expected = entry["expected"]
    if expected not in EXPECTED_LABELS:
        raise ConfigError(f"{where}: expected {expected!r} is not a known label; use one of "
                          f"{', '.join(EXPECTED_LABELS)}.")
    role = entry.get("role")
    if role is not None and role not in ROLES:
        raise ConfigError(f"{where}: role {role!r} is not known; use one of {', '.join(ROLES)}.")
    lobe = entry.get("lobe_labels", False)
    if not isinstance(lobe, bool):
        raise ConfigError(f"{where}: 'lobe_labels' must be true or false; got {lobe!r}.")
    optional: dict[str, Path | None] = {}
    for key in ("slice_labels", "reference_mask"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}: '{key}' must be a path string; got {value!r}.")
        optional[key] = None if value is None else resolve_entry_path(value, base, root)
    if lobe and optional["slice_labels"] is None:
        raise ConfigError(f"{where}: 'lobe_labels' needs 'slice_labels' (the lobe columns are "
                          "read from that CSV).")
    return StudySpec(name=entry["name"], path=resolve_entry_path(entry["path"], base, root),
                     expected=expected, slice_labels=optional["slice_labels"],
                     lobe_labels=lobe, reference_mask=optional["reference_mask"], role=role)


def check_inputs(manifest: Manifest) -> None:
    """Fail before any analysis when a study's image or slice-label CSV is missing.

    (Missing reference masks are allowed: their Dice is skipped with a note.)
    """
    missing = []
    for s in manifest.studies:
        if not s.path.exists():
            missing.append(f"{s.name}: image {s.path}")
        if s.slice_labels is not None and not s.slice_labels.is_file():
            missing.append(f"{s.name}: slice labels {s.slice_labels}")
    if missing:
        raise DataError(f"Manifest {manifest.path} (data root {manifest.root}) names files that "
                        f"do not exist: {'; '.join(missing)}. Check the root (--root DIR or "
                        f"${ROOT_ENV}) and the paths.")


def decision_matches(expected: str, decision: str) -> bool:
    """Whether a decision label satisfies a manifest's `expected` label."""
    if expected == ANY:
        return True
    if expected == NOT_COVID_SUSPECTED:
        return decision in (NOT_SUSPECTED, INDETERMINATE)
    return decision == expected


# --------------------------------------------------------------------------- slice labels


def match_slice_labels(volume: Volume, csv_path: str | Path, *, lobes: bool = False,
                       tolerance_mm: float = Z_TOLERANCE_MM) -> SliceLabels:
    """Match a slice-label CSV's rows to `volume`'s slices by z position (within tolerance).

    Raises DataError when a column is missing, a value is not 0/1 or a number, a row
    matches no slice, or two rows match the same slice.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"Slice-label file {csv_path} does not exist; check the manifest's "
                        "'slice_labels' path.")
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    needed = ["image_position_z_mm", "infection", *(LOBES if lobes else ())]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(f"Slice-label file {csv_path} lacks column(s) {', '.join(missing)}; "
                        f"it has {', '.join(columns) or 'none'}.")
    if not rows:
        raise DataError(f"Slice-label file {csv_path} has no rows.")
    z = volume.slice_positions_mm()
    infection = np.full(volume.shape[0], -1, dtype=np.int8)
    lobe_counts = dict.fromkeys(LOBES, 0) if lobes else None
    lobe_flags = {lobe: np.full(volume.shape[0], -1, dtype=np.int8) for lobe in LOBES} \
        if lobes else None
    unmatched: list[str] = []
    for line, row in enumerate(rows, start=2):
        row_z = _number(row["image_position_z_mm"], csv_path, line, "image_position_z_mm")
        k = int(np.argmin(np.abs(z - row_z)))
        if abs(z[k] - row_z) > tolerance_mm:
            unmatched.append(f"line {line} (z {row_z:.2f} mm)")
            continue
        if infection[k] >= 0:
            raise DataError(f"Slice-label file {csv_path}: line {line} (z {row_z:.2f} mm) "
                            f"matches slice {k} (z {z[k]:.2f} mm), which an earlier row already "
                            "labels; the CSV must have one row per slice.")
        infection[k] = _flag(row["infection"], csv_path, line, "infection")
        if lobe_counts is not None and lobe_flags is not None:
            for lobe in LOBES:
                flag = _flag(row[lobe], csv_path, line, lobe)
                lobe_counts[lobe] += flag
                lobe_flags[lobe][k] = flag
    if unmatched:
        shown = ", ".join(unmatched[:3]) + (f" and {len(unmatched) - 3} more"
                                            if len(unmatched) > 3 else "")
        raise DataError(f"Slice-label file {csv_path}: {len(unmatched)} of {len(rows)} rows match "
                        f"no slice of the volume within {tolerance_mm} mm: {shown}. The volume's "
                        f"slices lie at z {z.min():.2f} to {z.max():.2f} mm "
                        f"({volume.shape[0]} slices); is this the CSV of this series?")
    return SliceLabels(infection=infection, lobe_counts=lobe_counts, lobes=lobe_flags)


def _number(text: str | None, path: Path, line: int, column: str) -> float:
    try:
        value = float(text) if text is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise DataError(f"Slice-label file {path}, line {line}: {column} must be a number; "
                        f"got {text!r}.")
    return value


def _flag(text: str | None, path: Path, line: int, column: str) -> int:
    value = (text or "").strip()
    if value not in ("0", "1", "0.0", "1.0"):
        raise DataError(f"Slice-label file {path}, line {line}: {column} must be 0 or 1; "
                        f"got {text!r}.")
    return int(float(value))


# --------------------------------------------------------------------------- evaluation


def evaluate_study(spec: StudySpec, bundle: Any, *, config: Any = None) -> StudyEvaluation:
    """Analyse one study in memory and score it against the manifest's expectations."""
    from covidct.config import AnalysisConfig
    from covidct.io import load_volume
    from covidct.pipeline import analyze
    from covidct.train.baseline import threshold_lungs

    timings: dict[str, float] = {}
    notes: list[str] = []
    start = time.perf_counter()
    volume = load_volume(spec.path)
    timings["load"] = time.perf_counter() - start
    # Labels are matched before the (slow) analysis so a wrong CSV fails fast.
    labels = (match_slice_labels(volume, spec.slice_labels, lobes=spec.lobe_labels)
              if spec.slice_labels is not None else None)
    if labels is not None and labels.lobes is not None:
        contradiction = lobe_order_contradiction(volume.slice_positions_mm(), labels.lobes)
        if contradiction:
            logger.warning("%s: %s.", spec.name, contradiction)
            notes.append(contradiction)
    t = time.perf_counter()
    result = analyze(volume, config if config is not None else AnalysisConfig(), bundle)
    timings["analysis"] = time.perf_counter() - t
    t = time.perf_counter()
    base = threshold_lungs(volume)
    timings["baseline"] = time.perf_counter() - t

    d = result.decision
    slice_threshold = float(result.config.slice_threshold)
    prob = np.where(np.asarray(result.has_lung, bool),
                    np.nan_to_num(np.asarray(result.prob, np.float64)), 0.0)
    voxel_cm3 = volume.voxel_volume_mm3 / 1000.0
    model_mask = np.asarray(result.lung_mask)
    volumes: dict[str, float | None] = {
        "model": _round(float((model_mask > 0).sum()) * voxel_cm3, 1),
        "baseline": _round(float((base > 0).sum()) * voxel_cm3, 1), "reference": None}

    lung_dice = baseline_dice = None
    airway_dice = None
    airway = getattr(result, "airway_mask", None)
    if spec.reference_mask is not None and not spec.reference_mask.is_file():
        notes.append(f"reference mask {spec.reference_mask} does not exist (yet): Dice skipped")
    elif spec.reference_mask is not None:
        from covidct.train.volumes import read_label_map

        ref = np.asarray(read_label_map(spec.reference_mask, volume, name="reference mask"))
        lung_ref = np.where((ref == RIGHT) | (ref == LEFT), ref, 0).astype(np.uint8)
        volumes["reference"] = _round(float((lung_ref > 0).sum()) * voxel_cm3, 1)
        if not lung_ref.any():
            notes.append("reference mask holds no lung (labels 1, 2): Dice would be "
                         "meaningless, skipped")
        else:
            lung_dice = _side_dice(model_mask, lung_ref)
            baseline_dice = _side_dice(base, lung_ref)
        if airway is not None:
            if (ref == AIRWAY).any():
                airway_dice = dice(np.asarray(airway) > 0, ref == AIRWAY)
            else:
                notes.append("reference mask has no airway (label 3): airway Dice skipped")
    elif airway is not None:
        notes.append("no reference mask: airway Dice not computed")

    auc = sens = spec_ = None
    if labels is not None:
        keep = labels.labelled
        y = labels.infection[keep] == 1
        p = prob[keep]
        auc = roc_auc(p, y)
        sens, spec_ = sensitivity_specificity(p, y, slice_threshold)
        missed = int((keep & ~np.asarray(result.has_lung, bool) & (labels.infection == 1)).sum())
        if missed:
            notes.append(f"{missed} infected labelled slice(s) have no predicted lung "
                         "(scored with p = 0)")
    from covidct.train.localization import study_localization

    localization = study_localization(result, labels.infection if labels else None,
                                      labels.lobes if labels else None)
    timings["total"] = time.perf_counter() - start
    return StudyEvaluation(
        spec=spec, shape=volume.shape, spacing_mm=volume.spacing_mm, decision=d.label,
        reason=d.reason, positive_slice_ratio=d.positive_slice_ratio,
        case_threshold=float(d.threshold), slice_threshold=slice_threshold,
        matches_expected=decision_matches(spec.expected, d.label),
        lung_dice=lung_dice, baseline_dice=baseline_dice, airway_dice=airway_dice,
        lung_volume_cm3=volumes, slice_prob=prob.astype(np.float32),
        slice_has_lung=np.asarray(result.has_lung, bool), slice_labels=labels,
        slice_auc=_finite(auc), slice_sensitivity=_finite(sens),
        slice_specificity=_finite(spec_), notes=tuple(notes), timings_s=timings,
        localization=localization)


def evaluate_manifest(manifest: Manifest, bundle: Any, *, config: Any = None,
                      progress: Callable[[str], None] | None = None,
                      keep_going: bool = True) -> list[StudyEvaluation]:
    """Evaluate every study of `manifest` in order.

    With keep_going, a study that fails with a CovidCTError (unreadable series, a CSV that
    does not match) is reported with its error and the others still run; else it raises.
    """
    from covidct.errors import CovidCTError

    check_inputs(manifest)
    out = []
    for spec in manifest.studies:
        if progress is not None:
            progress(spec.name)
        start = time.perf_counter()
        try:
            out.append(evaluate_study(spec, bundle, config=config))
        except CovidCTError as exc:
            if not keep_going:
                raise
            logger.warning("Study %s failed: %s", spec.name, exc)
            out.append(StudyEvaluation(spec=spec, error=f"{type(exc).__name__}: {exc}",
                                       timings_s={"total": time.perf_counter() - start}))
    return out


def summarize(studies: Sequence[StudyEvaluation]) -> dict[str, Any]:
    """Pooled slice metrics, mean Dice, decisions matching (JSON-ready)."""
    probs, labels = [], []
    for s in studies:
        p, y = s.scored_slices()
        if p.size:
            probs.append(p)
            labels.append(y)
    prob = np.concatenate(probs) if probs else np.zeros(0)
    y = np.concatenate(labels) if labels else np.zeros(0, bool)
    thresholds = {s.slice_threshold for s in studies if s.slice_threshold is not None}
    slice_threshold = thresholds.pop() if len(thresholds) == 1 else None
    sens, spec = (sensitivity_specificity(prob, y, slice_threshold)
                  if slice_threshold is not None and prob.size else (float("nan"),) * 2)

    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return _round(float(np.mean(kept))) if kept else None

    decided = [s for s in studies if s.decision is not None]
    return {
        "studies": len(studies),
        "errors": sum(s.error is not None for s in studies),
        "decisions_matching": sum(bool(s.matches_expected) for s in decided),
        "decisions_total": len(decided),
        "mismatches": [s.spec.name for s in decided if not s.matches_expected],
        "lung_dice_mean": {
            "model": mean([s.lung_dice["dice"] for s in studies if s.lung_dice]),
            "baseline": mean([s.baseline_dice["dice"] for s in studies if s.baseline_dice]),
            "studies": sum(s.lung_dice is not None for s in studies)},
        "airway_dice_mean": mean([s.airway_dice for s in studies]),
        "slices_pooled": {
            "auc": _round(roc_auc(prob, y)) if prob.size else None,
            "sensitivity": _round(sens), "specificity": _round(spec),
            "threshold": slice_threshold, "slices": int(y.size), "infected": int(y.sum()),
            "studies": len(probs),
            "note": "labelled slices of all studies; slices without predicted lung count "
                    "with probability 0"},
        "time_s": round(sum(s.timings_s.get("total", 0.0) for s in studies), 1),
    }


def report_dict(manifest: Manifest, studies: Sequence[StudyEvaluation],
                bundle: Any = None) -> dict[str, Any]:
    """The full JSON document of a manifest evaluation."""
    models = None
    if bundle is not None:
        models = {name: {"name": getattr(getattr(m, "spec", None), "name", None),
                         "sha256": getattr(m, "sha256", None)}
                  for name, m in (("lung", bundle.lung), ("classifier", bundle.classifier))}
    return {"manifest": str(manifest.path), "root": str(manifest.root), "models": models,
            "summary": summarize(studies), "studies": [s.to_dict() for s in studies]}


# --------------------------------------------------------------------------- text report


def table_lines(studies: Sequence[StudyEvaluation],
                summary: Mapping[str, Any] | None = None) -> list[str]:
    """The printed report: one row per study, the overall lines, then reasons and notes."""
    summary = summarize(studies) if summary is None else summary
    w = max([len("study"), *(len(s.spec.name) for s in studies)])
    header = (f"{'study':{w}}  {'expected':19}  {'decision':15}  {'check':8}  {'lungDice':>8}  "
              f"{'baseDice':>8}  {'sliceAUC':>8}  {'sens':>6}  {'spec':>6}  {'time_s':>6}")
    lines = [header, "-" * len(header)]
    for s in studies:
        check = "ERROR" if s.error else ("ok" if s.matches_expected else "MISMATCH")
        lines.append(
            f"{s.spec.name:{w}}  {s.spec.expected:19}  {s.decision or '-':15}  {check:8}  "
            f"{_fmt(s.lung_dice and s.lung_dice['dice'], 8)}  "
            f"{_fmt(s.baseline_dice and s.baseline_dice['dice'], 8)}  "
            f"{_fmt(s.slice_auc, 8)}  {_fmt(s.slice_sensitivity, 6)}  "
            f"{_fmt(s.slice_specificity, 6)}  {s.timings_s.get('total', 0.0):6.1f}")
    sl, ld = summary["slices_pooled"], summary["lung_dice_mean"]
    threshold = f"p >= {sl['threshold']:.3f}" if sl["threshold"] is not None else "no threshold"
    lines += [
        "",
        f"decisions matching expected: {summary['decisions_matching']}/"
        f"{summary['decisions_total']}"
        + (f"  MISMATCH: {', '.join(summary['mismatches'])}" if summary["mismatches"] else "")
        + (f"  ({summary['errors']} study(ies) failed: ERROR)" if summary["errors"] else ""),
        f"lung Dice mean: model {_fmt(ld['model']).strip()}, HU baseline "
        f"{_fmt(ld['baseline']).strip()} ({ld['studies']} studies with a reference mask)",
        f"pooled slices: AUC {_fmt(sl['auc']).strip()}, sensitivity "
        f"{_fmt(sl['sensitivity']).strip()}, specificity {_fmt(sl['specificity']).strip()} at "
        f"{threshold} ({sl['infected']}/{sl['slices']} infected, labelled studies: "
        f"{sl['studies']}; slices without predicted lung count with p = 0)",
    ]
    if summary.get("airway_dice_mean") is not None:
        lines.append(f"airway Dice mean: {_fmt(summary['airway_dice_mean']).strip()}")
    lines.append(f"total time: {summary['time_s']:.1f} s")
    lines += ["", "decision reasons and notes:"]
    for s in studies:
        if s.error:
            lines.append(f"  {s.spec.name}: ERROR {s.error}")
            continue
        ratio = (f"ratio {s.positive_slice_ratio:.3f} vs {s.case_threshold:.3f}"
                 if s.positive_slice_ratio is not None else "no ratio")
        lines.append(f"  {s.spec.name}: {s.decision} ({ratio}): {s.reason}")
        if s.lung_dice and s.baseline_dice:
            model, base = s.lung_dice, s.baseline_dice
            lines.append(f"      lung Dice right/left: model {_fmt(model['dice_right']).strip()}/"
                         f"{_fmt(model['dice_left']).strip()}, baseline "
                         f"{_fmt(base['dice_right']).strip()}/{_fmt(base['dice_left']).strip()}")
        if s.airway_dice is not None:
            lines.append(f"      airway Dice: {s.airway_dice:.3f}")
        if s.slice_labels is not None and s.slice_labels.lobe_counts is not None:
            counts = ", ".join(f"{k} {v}" for k, v in s.slice_labels.lobe_counts.items())
            lines.append(f"      labelled lobe-slices: {counts}")
        loc = s.localization
        if loc is not None:
            lines.append(f"      lesions: {_fmt(loc['infection_cm3']).strip()} cm3 (GGO "
                         f"{_fmt(loc['ggo_cm3']).strip()}, consolidation "
                         f"{_fmt(loc['consolidation_cm3']).strip()})")
            if "labelled_infected_slices_with_lesion" in loc:
                share = loc["lesion_slices_labelled_infected"]
                lines.append(
                    "      lesion on labelled infected slices "
                    f"{_fmt(loc['labelled_infected_slices_with_lesion']).strip()}, on clean "
                    f"slices {_fmt(loc['labelled_clean_slices_with_lesion']).strip()}; lesion "
                    f"slices labelled infected {_fmt(share).strip()}")
            if loc.get("lobes"):
                lobes = loc["lobes"]
                lines.append(f"      labelled lobe-slices with lesion in their lobe region: "
                             f"{lobes['with_lesion']}/{lobes['labelled_lobe_slices']} "
                             f"({_fmt(lobes['share']).strip()}; {lobes['note']})")
        for note in s.notes:
            lines.append(f"      note: {note}")
    return lines


def _side_dice(mask: np.ndarray, ref: np.ndarray) -> dict[str, float | None]:
    """Lung, right and left Dice; a side empty in both masks is None (not a perfect 1.0)."""
    def score(a: np.ndarray, b: np.ndarray) -> float | None:
        return _round(dice(a, b)) if a.any() or b.any() else None

    return {"dice": score(mask > 0, ref > 0), "dice_right": score(mask == RIGHT, ref == RIGHT),
            "dice_left": score(mask == LEFT, ref == LEFT)}


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def _fmt(value: float | None, width: int = 7) -> str:
    return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"
