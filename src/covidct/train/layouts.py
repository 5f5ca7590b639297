"""Finding the cases of a dataset laid out like one of the public COVID-19 CT sets.

Each `find_<layout>(root)` returns CaseRecords (paths and label conventions; nothing is
read but small JSON/CSV files). Accepted layouts:

synth           ROOT/case_XXX/{ct.nii.gz, lung.nii.gz (1 right, 2 left), infection.nii.gz,
                truth.json}, as written by `covidct synth`.
nifti-pairs     ROOT/images/X.nii.gz with masks of the same name in ROOT/lungs/ (or lung/,
                lung_masks/, lungmasks/) and ROOT/infections/ (or infection/, lesions/,
                infection_masks/, masks/); or flat ROOT/X.nii.gz beside X_lung.nii.gz
                (_lungs, _lungmask, _lung_mask) and X_infection.nii.gz (_infections, _inf,
                _lesion, _lesions, _mask). .nii, .nrrd, .mha also accepted. Lung masks:
                binary (split by side) or two labels (assigned by side). Optional
                ROOT/labels.csv with columns case,label; otherwise a case with an infection
                mask is 'covid' when a slice is positive, else 'negative'.
medseg          MedSeg COVID-19 CT segmentation: ROOT/tr_im.nii.gz + tr_mask.nii.gz (100
                slices of different patients, one case 'medseg_tr' labelled per slice, no
                case label; optional tr_lungmasks_updated.nii.gz) and ROOT/rp_im/N.nii.gz +
                rp_msk/N.nii.gz + rp_lung_msk/N.nii.gz (9 volumes, 'covid'). Mask labels 1
                GGO, 2 consolidation (infection), 3 pleural effusion (not infection).
covid19-ct-seg  Ma et al. COVID-19-CT-Seg: ROOT/COVID-19-CT-Seg_20cases/*.nii.gz,
                ROOT/Lung_Mask/ (1 left, 2 right), ROOT/Infection_Mask/, or
                ROOT/Lung_and_Infection_Mask/ (1 left, 2 right, 3 infection). CT names carry
                '_org' / 'covid-19-pneumonia-' / '-dcm' that mask names drop. All 'covid'.
mosmed          MosMedData: ROOT/studies/CT-0..CT-4/study_XXXX.nii.gz (CT-0 'negative',
                CT-1..4 'covid'), ROOT/masks/study_XXXX_mask.nii.gz (infection, CT-1 only).
csv             Images ROOT/images/<case>.nii.gz (or ROOT/<case>.nii.gz, .nrrd, .mha, or a
                DICOM folder ROOT/<case>/) + one CSV with header case,first_slice,last_slice,
                label: ranges of slices, 0-based inclusive on the canonical grid (slice 0 is
                the most inferior, as `covidct convert` writes it); rows labelled covid /
                positive / 1 mark positive slices, the rest of the case is negative; a case
                with only negative rows (range may be empty) is 'negative'.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from covidct.errors import DataError
from covidct.train.masks import BY_SIDE, LEFT_RIGHT, RIGHT_LEFT
from covidct.train.volumes import IMAGE_SUFFIXES, is_image_file, strip_suffix

logger = logging.getLogger(__name__)

POSITIVE_WORDS = frozenset({"covid", "covid-19", "positive", "pos", "1", "abnormal", "true"})
NEGATIVE_WORDS = frozenset({"negative", "neg", "0", "normal", "false", "healthy"})


@dataclass(frozen=True)
class CaseRecord:
    """Where one case's files are and how to read their labels."""

    case_id: str
    layout: str
    image: Path
    lung: Path | None = None
    infection: Path | None = None
    label: str | None = None  # 'covid' | 'negative' | None (unknown)
    lung_convention: str = RIGHT_LEFT
    lung_fill_labels: tuple[int, ...] = ()  # labels inside the lung (infection in a lung map)
    infection_labels: tuple[int, ...] | None = None  # None: any non-zero label
    per_slice: bool = False  # slices of different patients stacked in one file
    truth: Path | None = None  # synth truth.json
    slice_ranges: tuple[tuple[int, int], ...] | None = None  # csv: positive slice ranges
    derive_label: bool = False  # label from the infection mask at load time


def _sorted_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _find_file(folder: Path | None, stem: str) -> Path | None:
    if folder is None:
        return None
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


# --- synth -------------------------------------------------------------------------------

def find_synth(root: Path) -> list[CaseRecord]:
    records = []
    for case_dir in sorted(p for p in root.iterdir() if (p / "ct.nii.gz").is_file()):
        truth_path = case_dir / "truth.json"
        label = None
        if truth_path.is_file():
            try:
                label = json.loads(truth_path.read_text()).get("label")
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"Cannot read {truth_path}: {exc}") from exc
        records.append(CaseRecord(
            case_id=case_dir.name, layout="synth", image=case_dir / "ct.nii.gz",
            lung=_find_file(case_dir, "lung"), infection=_find_file(case_dir, "infection"),
            label=label, lung_convention=RIGHT_LEFT,
            truth=truth_path if truth_path.is_file() else None))
    return records


# --- nifti-pairs -------------------------------------------------------------------------

_LUNG_DIRS = ("lungs", "lung", "lung_masks", "lungmasks", "lung_mask")
_INFECTION_DIRS = ("infections", "infection", "lesions", "infection_masks", "masks")
_LUNG_SUFFIXES = ("_lung", "_lungs", "_lungmask", "_lung_mask")
_INFECTION_SUFFIXES = ("_infection", "_infections", "_inf", "_lesion", "_lesions", "_mask")


def find_nifti_pairs(root: Path) -> list[CaseRecord]:
    labels = _read_label_table(root / "labels.csv")
    images_dir = root / "images"
    records = []
    if images_dir.is_dir():
        lung_dir, inf_dir = _first_dir(root, _LUNG_DIRS), _first_dir(root, _INFECTION_DIRS)
        pairs = [(p, _find_file(lung_dir, strip_suffix(p.name)),
                  _find_file(inf_dir, strip_suffix(p.name))) for p in _sorted_images(images_dir)]
    else:
        files = _sorted_images(root)
        mask_suffixes = _LUNG_SUFFIXES + _INFECTION_SUFFIXES
        stems = [strip_suffix(p.name) for p in files]
        pairs = []
        for path, stem in zip(files, stems, strict=True):
            if any(stem.endswith(s) and stem[: -len(s)] in stems for s in mask_suffixes):
                continue  # a mask of another image
            lung = next((m for s in _LUNG_SUFFIXES if (m := _find_file(root, stem + s))), None)
            inf = next((m for s in _INFECTION_SUFFIXES if (m := _find_file(root, stem + s))),
                       None)
            pairs.append((path, lung, inf))
    for image, lung, infection in pairs:
        case_id = strip_suffix(image.name)
        label = labels.get(case_id)
        records.append(CaseRecord(
            case_id=case_id, layout="nifti-pairs", image=image, lung=lung, infection=infection,
            label=label, lung_convention=BY_SIDE,
            derive_label=label is None and infection is not None))
    return records


def _read_label_table(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for row in _read_csv(path, ("case", "label")):
        out[row["case"]] = _parse_label(row["label"], path)
    return out


# --- medseg ------------------------------------------------------------------------------

def find_medseg(root: Path) -> list[CaseRecord]:
    common = {"layout": "medseg", "lung_convention": BY_SIDE, "infection_labels": (1, 2)}
    records = []
    if (root / "tr_im.nii.gz").is_file():
        records.append(CaseRecord(
            case_id="medseg_tr", image=root / "tr_im.nii.gz",
            infection=_find_file(root, "tr_mask"),
            lung=_find_file(root, "tr_lungmasks_updated") or _find_file(root, "tr_lungmasks"),
            label=None, per_slice=True, **common))
    for image in _sorted_images(root / "rp_im"):
        stem = strip_suffix(image.name)
        records.append(CaseRecord(
            case_id=f"medseg_rp_{stem}", image=image,
            infection=_find_file(_first_dir(root, ("rp_msk", "rp_mask")), stem),
            lung=_find_file(_first_dir(root, ("rp_lung_msk", "rp_lung_mask")), stem),
            label="covid", **common))
    return records


# --- covid19-ct-seg ----------------------------------------------------------------------

def _ma_key(name: str) -> str:
    """Name shared by a COVID-19-CT-Seg CT and its masks."""
    key = strip_suffix(name).lower()
    for token in ("_org", "covid-19-pneumonia-", "-dcm"):
        key = key.replace(token, "")
    return re.sub(r"[^a-z0-9]+", "_", key).strip("_")


def find_covid19_ct_seg(root: Path) -> list[CaseRecord]:
    ct_dir = _first_dir(root, ("COVID-19-CT-Seg_20cases", "COVID-19-CT-Seg_20cases_ct", "ct"))
    if ct_dir is None:
        raise DataError(f"{root} looks like COVID-19-CT-Seg but has no "
                        "COVID-19-CT-Seg_20cases/ folder of CT images.")

    def index(folder: str) -> dict[str, Path]:
        return {_ma_key(p.name): p for p in _sorted_images(root / folder)}

    lungs, infections = index("Lung_Mask"), index("Infection_Mask")
    combined = index("Lung_and_Infection_Mask")
    records = []
    for image in _sorted_images(ct_dir):
        key = _ma_key(image.name)
        lung, infection = lungs.get(key), infections.get(key)
        fill: tuple[int, ...] = ()
        if lung is None and key in combined:
            lung, fill = combined[key], (3,)
        infection_labels = None
        if infection is None and key in combined:
            infection, infection_labels = combined[key], (3,)
        records.append(CaseRecord(
            case_id=key, layout="covid19-ct-seg", image=image, lung=lung, infection=infection,
            label="covid", lung_convention=LEFT_RIGHT, lung_fill_labels=fill,
            infection_labels=infection_labels))
    return records


# --- mosmed ------------------------------------------------------------------------------

def find_mosmed(root: Path) -> list[CaseRecord]:
    records = []
    masks = root / "masks"
    for category in sorted(p for p in (root / "studies").glob("CT-*") if p.is_dir()):
        label = "negative" if category.name == "CT-0" else "covid"
        for image in _sorted_images(category):
            stem = strip_suffix(image.name)
            records.append(CaseRecord(
                case_id=stem, layout="mosmed", image=image,
                infection=_find_file(masks, f"{stem}_mask"), label=label))
    return records


# --- csv ---------------------------------------------------------------------------------

CSV_COLUMNS = ("case", "first_slice", "last_slice", "label")


def _find_annotation_csv(root: Path) -> Path | None:
    for path in sorted(root.glob("*.csv")):
        with path.open(newline="") as handle:
            header = [h.strip().lower() for h in next(csv.reader(handle), [])]
        if all(c in header for c in CSV_COLUMNS):
            return path
    return None


def find_csv(root: Path) -> list[CaseRecord]:
    table = _find_annotation_csv(root)
    if table is None:
        raise DataError(f"No CSV with columns {','.join(CSV_COLUMNS)} in {root}.")
    ranges: dict[str, list[tuple[int, int]]] = {}
    for row in _read_csv(table, CSV_COLUMNS):
        case = row["case"]
        ranges.setdefault(case, [])
        if _parse_label(row["label"], table) == "covid":
            try:
                first, last = int(row["first_slice"]), int(row["last_slice"])
            except ValueError as exc:
                raise DataError(f"{table}: positive row for {case!r} needs integer "
                                f"first_slice/last_slice; got {row}.") from exc
            if last < first or first < 0:
                raise DataError(f"{table}: bad slice range {first}..{last} for {case!r}.")
            ranges[case].append((first, last))
    records = []
    for case, spans in sorted(ranges.items()):
        image = _find_file(root / "images", case) or _find_file(root, case)
        if image is None and (root / case).is_dir():
            image = root / case  # a DICOM folder
        if image is None:
            raise DataError(f"{table} names case {case!r} but no image images/{case}.nii.gz, "
                            f"{case}.nii.gz (.nrrd, .mha) or DICOM folder {case}/ is in {root}.")
        records.append(CaseRecord(
            case_id=case, layout="csv", image=image,
            label="covid" if spans else "negative", slice_ranges=tuple(spans)))
    return records


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        missing = [c for c in columns if c not in fields]
        if missing:
            raise DataError(f"{path} lacks column(s) {', '.join(missing)}; "
                            f"expected a header {','.join(columns)}.")
        return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                for row in reader]


def _parse_label(value: str, source: Path) -> str:
    word = value.strip().lower()
    if word in POSITIVE_WORDS:
        return "covid"
    if word in NEGATIVE_WORDS:
        return "negative"
    raise DataError(f"{source}: unknown label {value!r}; use covid/positive/1 or "
                    "negative/normal/0.")


# --- detection ---------------------------------------------------------------------------

FINDERS: dict[str, Callable[[Path], list[CaseRecord]]] = {
    "synth": find_synth,
    "nifti-pairs": find_nifti_pairs,
    "medseg": find_medseg,
    "covid19-ct-seg": find_covid19_ct_seg,
    "mosmed": find_mosmed,
    "csv": find_csv,
}
LAYOUTS = tuple(FINDERS)


def detect_layout(root: Path) -> str | None:
    """The layout `root` looks like, or None."""
    if any((p / "ct.nii.gz").is_file() for p in root.iterdir() if p.is_dir()):
        return "synth"
    if any((root / d).is_dir() for d in ("Lung_Mask", "Infection_Mask",
                                          "Lung_and_Infection_Mask", "COVID-19-CT-Seg_20cases")):
        return "covid19-ct-seg"
    if (root / "tr_im.nii.gz").is_file() or (root / "rp_im").is_dir():
        return "medseg"
    if (root / "studies").is_dir() and any((root / "studies").glob("CT-*")):
        return "mosmed"
    if _find_annotation_csv(root) is not None:
        return "csv"
    if (root / "images").is_dir() or _sorted_images(root):
        return "nifti-pairs"
    return None
