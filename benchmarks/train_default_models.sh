#!/usr/bin/env bash
# Train, calibrate and evaluate the shipped default models (covidct/models/weights).
#
#   benchmarks/train_default_models.sh [corpus|lung|classifier|classifier4|calibrate|evaluate|install|all]
#
# Each stage's output goes to benchmarks/results/train_<stage>.txt. Seeds: training corpora
# 1000-1006 (validation = 20 % of the cases of each run, split by case with seed 0; a
# resumed run keeps its checkpoint's validation cases unless --resplit), calibration
# corpora 3000-3002 (choice between versions and input resize, thresholds), test corpora
# 2000 (512 matrix, 1.25-3 mm slices) and 2001 (0.6-0.9 mm slices, heavier noise: outside
# every training range). Test corpora are used only for the figures in the model cards, never for
# training, thresholds, early stopping or the choice between versions.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
COVIDCT=.venv/bin/covidct
WORK=${COVIDCT_WORK:-/work/corpus}
RESULTS=benchmarks/results
mkdir -p "$WORK" "$RESULTS"
stage=${1:-all}

run() {  # run STAGE CMD...: echo the command and keep its output
  local name=$1; shift
  { echo "\$ $*"; echo "# $(date -u +%FT%TZ) $(uname -n) $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)";
    /usr/bin/time -f "# wall %e s, user %U s" "$@"; } 2>&1 | tr '\r' '\n' | grep -v '^\s*$' \
    | grep -v 'it/s\|s/it' >> "$RESULTS/train_$name.txt"
}

if [[ $stage == corpus || $stage == all ]]; then
  : > "$RESULTS/train_corpus.txt"
  # Training corpus: 256 matrix and 2-5 mm slices to save time (the test corpus is realistic).
  run corpus $COVIDCT synth "$WORK/train" --cases 128 --seed 1000 --matrix 256 \
      --slice-mm 2 5 --noise-hu 8 50 --workers 2 --quiet
  # Test corpus: another seed and other scanner parameters.
  run corpus $COVIDCT synth "$WORK/test" --cases 24 --seed 2000 --matrix 512 \
      --slice-mm 1.25 3 --noise-hu 15 45 --workers 2 --quiet
  # Extra severe COVID cases for the lung model (the first lung model missed large
  # peripheral consolidations: Dice 0.83 on a test case with 49 % involvement).
  run corpus $COVIDCT synth "$WORK/train_severe" --cases 24 --seed 1001 --matrix 256 \
      --slice-mm 2 5 --noise-hu 8 50 --covid-fraction 1 --severity 0.15 0.6 --workers 2 --quiet
  run corpus $COVIDCT synth "$WORK/train_severe2" --cases 32 --seed 1002 --matrix 256 \
      --slice-mm 1.5 5 --noise-hu 8 50 --covid-fraction 1 --severity 0.3 0.7 --workers 2 --quiet
  # Mild cases (0.15-3 % of the lung) for the classifier: slices near the positive-slice rule.
  run corpus $COVIDCT synth "$WORK/train_mild" --cases 48 --seed 1003 --matrix 256 \
      --slice-mm 2 5 --noise-hu 8 50 --severity 0.0015 0.03 --workers 2 --quiet
  # Calibration corpus (thresholds and the choice between model versions; never trained on).
  run corpus $COVIDCT synth "$WORK/calibrate" --cases 40 --seed 3000 --matrix 256 \
      --slice-mm 2 5 --noise-hu 8 50 --workers 2 --quiet
  mkdir -p "$WORK/train_lung2" "$WORK/train_cls2"
  for d in "$WORK"/train/case_*; do
    ln -sfn "$d" "$WORK/train_lung2/$(basename "$d")"
    ln -sfn "$d" "$WORK/train_cls2/$(basename "$d")"; done
  for d in "$WORK"/train_severe/case_*; do
    ln -sfn "$d" "$WORK/train_lung2/severe_$(basename "$d")"; done
  for d in "$WORK"/train_severe2/case_*; do
    ln -sfn "$d" "$WORK/train_lung2/severe2_$(basename "$d")"; done
  for d in "$WORK"/train_mild/case_*; do
    ln -sfn "$d" "$WORK/train_cls2/mild_$(basename "$d")"; done
  # Version 3 data: 512-matrix cases over a wide range of scanner settings (1-5 mm slices,
  # 8-60 HU noise; version 2 had seen only 256-matrix, 2-5 mm data), for both models, and
  # very severe 512-matrix cases for the lung model (its losses were consolidated lungs).
  run corpus $COVIDCT synth "$WORK/train_scan" --cases 48 --seed 1004 --matrix 512 \
      --slice-mm 1 5 --noise-hu 8 60 --workers 2 --quiet
  run corpus $COVIDCT synth "$WORK/train_severe3" --cases 24 --seed 1005 --matrix 512 \
      --slice-mm 1 5 --noise-hu 8 60 --covid-fraction 1 --severity 0.4 0.8 --workers 2 --quiet
  # Second calibration corpus, 512 matrix (choice between versions and thresholds only).
  run corpus $COVIDCT synth "$WORK/calibrate2" --cases 24 --seed 3001 --matrix 512 \
      --slice-mm 1 5 --noise-hu 8 60 --workers 2 --quiet
  # Scanner-shift test corpus: thinner slices and heavier noise than any training case.
  run corpus $COVIDCT synth "$WORK/test_shift" --cases 16 --seed 2001 --matrix 512 \
      --slice-mm 0.6 0.9 --noise-hu 45 65 --workers 2 --quiet
  # Heavy-noise validation corpus, the scanner-shift settings with another seed (it chose
  # how the inputs are shrunk; see the calibrate stage).
  run corpus $COVIDCT synth "$WORK/val_noisy" --cases 8 --seed 3002 --matrix 512 \
      --slice-mm 0.6 0.9 --noise-hu 45 65 --workers 2 --quiet
  mkdir -p "$WORK/train_lung3" "$WORK/train_cls3"
  for d in "$WORK"/train_lung2/*; do ln -sfn "$(readlink -f "$d")" "$WORK/train_lung3/$(basename "$d")"; done
  for d in "$WORK"/train_cls2/*; do ln -sfn "$(readlink -f "$d")" "$WORK/train_cls3/$(basename "$d")"; done
  for d in "$WORK"/train_scan/case_*; do
    ln -sfn "$d" "$WORK/train_lung3/scan_$(basename "$d")"
    ln -sfn "$d" "$WORK/train_cls3/scan_$(basename "$d")"; done
  for d in "$WORK"/train_severe3/case_*; do
    ln -sfn "$d" "$WORK/train_lung3/severe3_$(basename "$d")"; done
  # Version 4 data (lung only): 24 more very severe 512-matrix cases, 55-85 % involved.
  run corpus $COVIDCT synth "$WORK/train_severe4" --cases 24 --seed 1006 --matrix 512 \
      --slice-mm 1 5 --noise-hu 8 60 --covid-fraction 1 --severity 0.55 0.85 --workers 2 --quiet
  mkdir -p "$WORK/train_lung4"
  for d in "$WORK"/train_lung3/*; do ln -sfn "$(readlink -f "$d")" "$WORK/train_lung4/$(basename "$d")"; done
  for d in "$WORK"/train_severe4/case_*; do
    ln -sfn "$d" "$WORK/train_lung4/severe4_$(basename "$d")"; done
fi
MODELS="$WORK/final"  # the shipped set: lung v5, classifier v3, thresholds, figures
# The lung and classifier runs are independent (one checkpoint per task) and ran side by
# side with one thread each. Version 2 trains from scratch; version 3 continues version 2's
# checkpoint (--resume: same optimiser, the learning-rate schedule stretched to the new
# epoch count) on the version 3 data. Early stopping in the resumed run compares against
# version 2 re-scored on the new validation split. The classifier's thresholds are then
# calibrated with the final lung model.
if [[ $stage == lung || $stage == all ]]; then
  : > "$RESULTS/train_lung.txt"
  # Version 2: from scratch on 184 cases (the severe sets included) with 30 % slices
  # without lung (version 1 drew lung above the apices), 20 epochs.
  OMP_NUM_THREADS=1 run lung $COVIDCT -v train lung --data "$WORK/train_lung2" \
      --out "$WORK/lung_v2" --arch unet_vgg16 --width 0.125 --epochs 20 --steps-per-epoch 150 \
      --batch-size 12 --lr 3e-3 --seed 0 --slices-per-case 32 --patience 6 --empty-slices 0.3 \
      --no-input-antialias --no-progress
  # Version 3 (shipped): version 2 continued to epoch 32 on 256 cases (+ 48 scanner-range
  # and 24 very severe 512-matrix cases).
  mkdir -p "$WORK/lung_v3"
  cp "$WORK/lung_v2/checkpoint-lung.pt" "$WORK/lung_v3/"
  OMP_NUM_THREADS=1 run lung $COVIDCT -v train lung --data "$WORK/train_lung3" \
      --out "$WORK/lung_v3" --arch unet_vgg16 --width 0.125 --epochs 32 --steps-per-epoch 150 \
      --batch-size 12 --lr 3e-3 --seed 0 --slices-per-case 32 --patience 6 --empty-slices 0.3 \
      --no-input-antialias --resume --resplit --no-progress
  # Version 3 against version 2 on version 3's validation split and on the 512-matrix
  # calibration corpus (seed 3001, never trained on); 3D Dice through covidct.lung.
  run lung $PY benchmarks/lung_model_selection.py --data "$WORK/train_lung3" \
      --candidate "$WORK/lung_v3/lung-unet-vgg16-w0125.json" \
      --incumbent "$WORK/lung_v2/lung-unet-vgg16-w0125.json" --extra "$WORK/calibrate2" \
      --out "$RESULTS/lung_model_selection.txt"
  # Versions 4 and 5: version 3 continued to epoch 42 on 280 cases (+ 24 very severe,
  # 55-85 % involved), validated on version 3's cases (kept by --resume); two threads.
  # Version 4 trains on antialiased inputs (rejected: worse on heavy noise), version 5
  # (shipped) on plain bilinear inputs as version 3 did.
  for v in 4 5; do
    mkdir -p "$WORK/lung_v$v"
    cp "$WORK/lung_v3/checkpoint-lung.pt" "$WORK/lung_v$v/"
    resize=$([[ $v == 4 ]] && echo --train-antialias || echo --no-input-antialias)
    run lung $COVIDCT -v train lung --data "$WORK/train_lung4" \
        --out "$WORK/lung_v$v" --arch unet_vgg16 --width 0.125 --epochs 42 --steps-per-epoch 150 \
        --batch-size 12 --lr 3e-3 --seed 0 --slices-per-case 32 --patience 6 --empty-slices 0.3 \
        "$resize" --resume --no-progress
  done
  # Each against version 3, all run with antialiased input (as version 3 ships since the
  # calibrate stage chose it), on the validation cases and on two corpora none trained on
  # (512 matrix; heavy noise).
  for v in 3 5; do
    run lung $PY -c 'import sys; from pathlib import Path; sys.path.insert(0, "benchmarks")
from input_antialias_selection import models_with
models_with(Path(sys.argv[1]), {"lung"}, Path(sys.argv[2]))' "$WORK/lung_v$v" "$WORK/lung_v${v}aa"
  done
  for candidate in lung_v4 lung_v5aa; do
    run lung $PY benchmarks/lung_model_selection.py --data "$WORK/train_lung4" \
        --candidate "$WORK/$candidate/lung-unet-vgg16-w0125.json" \
        --incumbent "$WORK/lung_v3aa/lung-unet-vgg16-w0125.json" --extra "$WORK/calibrate2" \
        --extra "$WORK/val_noisy" --out "$RESULTS/lung_model_selection_${candidate%aa}.txt"
  done
  mkdir -p "$MODELS"
  cp "$WORK"/lung_v5/lung-unet-vgg16-w0125.* "$MODELS/"
fi
if [[ $stage == classifier || $stage == all ]]; then
  : > "$RESULTS/train_classifier.txt"
  # Version 2: from scratch on the training corpus plus 48 mild cases, 30 epochs.
  OMP_NUM_THREADS=1 run classifier $COVIDCT -v train classifier --data "$WORK/train_cls2" \
      --out "$WORK/cls_v2" --arch resnet18 --width 0.5 --epochs 30 --steps-per-epoch 150 \
      --batch-size 16 --lr 1e-3 --seed 0 --slices-per-case 64 --patience 8 --no-input-antialias \
      --no-progress
  # Version 3 (shipped): version 2 continued to epoch 50 on 224 cases (+ 48 scanner-range
  # 512-matrix cases).
  mkdir -p "$WORK/cls_v3"
  cp "$WORK/cls_v2/checkpoint-classifier.pt" "$WORK/cls_v3/"
  OMP_NUM_THREADS=1 run classifier $COVIDCT -v train classifier --data "$WORK/train_cls3" \
      --out "$WORK/cls_v3" --arch resnet18 --width 0.5 --epochs 50 --steps-per-epoch 150 \
      --batch-size 16 --lr 1e-3 --seed 0 --slices-per-case 64 --patience 8 --resume --resplit \
      --no-input-antialias --no-progress
  # Version 3 against version 2, both with the version 3 lung model, on the two calibration
  # corpora (seeds 3000 and 3001; neither version trained on them).
  for v in cls_v2 cls_v3; do
    mkdir -p "$WORK/select_$v"
    cp "$WORK"/lung_v3/lung-unet-vgg16-w0125.* "$WORK/$v"/classifier-resnet18-w05.* \
        "$WORK/select_$v/"
    for c in calibrate calibrate2; do
      run classifier $COVIDCT evaluate --data "$WORK/$c" --models "$WORK/select_$v" \
          --no-baseline --json "$RESULTS/classifier_selection_${v}_$c.json"
    done
  done
  mkdir -p "$MODELS"
  cp "$WORK"/cls_v3/classifier-resnet18-w05.* "$MODELS/"
fi
# How the inputs are shrunk to 224: plain bilinear sampling (as v1-v3 were trained) or
# antialiased, per model, chosen on the 512-matrix calibration corpus and the heavy-noise
# validation corpus; the choice is written into the cards (the weights are unchanged).
ANTIALIAS=${ANTIALIAS:-both}  # benchmarks/results/input_antialias/*.txt
if [[ $stage == calibrate || $stage == all ]]; then
  : > "$RESULTS/train_calibrate.txt"
  mkdir -p "$RESULTS/input_antialias"
  for c in calibrate2 val_noisy; do
    run calibrate $PY benchmarks/input_antialias_selection.py --models "$MODELS" \
        --data "$WORK/$c" --out "$RESULTS/input_antialias/$c.txt" \
        --json-dir "$WORK/antialias_json"
  done
  run calibrate $PY - "$MODELS" "$ANTIALIAS" <<'PYEOF'
import sys
from dataclasses import replace
from pathlib import Path
from covidct.models.registry import list_specs, write_card
from covidct.train import classifier_training, lung_training
sys.path.insert(0, "benchmarks")
from input_antialias_selection import VARIANTS  # the variants the selection compared
models, tasks = Path(sys.argv[1]), VARIANTS[sys.argv[2]]
described = {"lung": lung_training.PREPROCESSING, "classifier": classifier_training.PREPROCESSING}
for spec in list_specs(models):
    spec = replace(spec, input_antialias=spec.task in tasks,
                   preprocessing=described[spec.task])
    write_card(spec, models / f"{spec.name}.json")
    print(spec.name, "input_antialias", spec.input_antialias)
PYEOF
  # Thresholds on the classifier's validation cases, with the lung model's masks (as at
  # inference); the weights (and their sha256) are unchanged, the card is rewritten.
  # Calibration cases: the classifier's validation split plus two separate calibration
  # corpora (seed 3000, training-corpus scanner parameters; seed 3001, 512 matrix, 1-5 mm;
  # 25 validation cases alone had put the case threshold above mild COVID cases).
  run calibrate $PY - "$MODELS" "$WORK/train_cls3" "$WORK/calibrate" "$WORK/calibrate2" <<'PYEOF'
import sys
from dataclasses import replace
from pathlib import Path
from covidct.models.registry import load_bundle, write_card
from covidct.train.calibrate import calibrate_models
from covidct.train.datasets import discover_cases
models, data, extras = Path(sys.argv[1]), Path(sys.argv[2]), [Path(a) for a in sys.argv[3:]]
bundle = load_bundle(models)
spec = bundle.classifier.spec
val_ids = set(spec.training["val_case_ids"])
records = [r for r in discover_cases(data) if r.case_id in val_ids] + [
    replace(r, case_id=f"{extra.name}/{r.case_id}") for extra in extras
    for r in discover_cases(extra)]
slice_t, case_t, details = calibrate_models(bundle, records)
details["lung_masks"] = f"predicted by {bundle.lung.spec.name} ({bundle.lung.sha256[:12]})"
spec = replace(spec, slice_threshold=round(slice_t, 6), case_threshold=round(case_t, 6),
               training=spec.training | {"calibration": details})
write_card(spec, models / f"{spec.name}.json")
print(f"{len(records)} validation cases: slice threshold {slice_t:.4f}, case threshold "
      f"{case_t:.4f}\n{details}")
PYEOF
fi
if [[ $stage == classifier4 || $stage == all ]]; then
  # Version 4 (shipped): version 3's encoder (a new head) fine-tuned on real anatomy --
  # the two LIDC-IDRI series allowed for training, untouched (real negatives) and with
  # COVID-19 lesions inserted (covidct synth --insert-into: 8 cases each, seed 4000) -- and
  # 40 synthetic cases (seed 1000). Chosen over version 3 on the real validation series
  # (benchmarks/evaluate_real.py); thresholds from its own validation split (20 %).
  : > "$RESULTS/train_classifier4.txt"
  LIDC=../shared/data/real
  run classifier4 $COVIDCT synth "$WORK/lidc_ins" \
      --insert-into "$LIDC/lidc-idri-0001/LIDC-IDRI-0001.nii.gz" \
      --insert-into "$LIDC/lidc-idri-0003/LIDC-IDRI-0003.nii.gz" \
      --cases 8 --seed 4000 --include-negatives --quiet
  run classifier4 $COVIDCT synth "$WORK/train_syn" --cases 40 --seed 1000 --matrix 256 \
      --slice-mm 2 5 --noise-hu 8 50 --workers 1 --quiet
  mkdir -p "$WORK/cls_train"
  for d in "$WORK"/train_syn/case_*; do ln -sfn "$d" "$WORK/cls_train/syn_$(basename "$d")"; done
  for d in "$WORK"/lidc_ins/case_*; do ln -sfn "$d" "$WORK/cls_train/lidc_$(basename "$d")"; done
  git show ca820e8:src/covidct/models/weights/classifier-resnet18-w05.safetensors \
      > "$WORK/classifier_v3.safetensors"
  run classifier4 $COVIDCT -v train classifier --data "$WORK/cls_train" --out "$WORK/cls_v4" \
      --arch resnet18 --width 0.5 --epochs 12 --steps-per-epoch 100 --batch-size 16 \
      --lr 5e-4 --seed 0 --slices-per-case 64 --patience 4 \
      --pretrained "$WORK/classifier_v3.safetensors" --no-progress
  mkdir -p "$MODELS"
  cp "$WORK"/cls_v4/classifier-resnet18-w05.* "$MODELS/"
fi
if [[ $stage == evaluate || $stage == all ]]; then
  : > "$RESULTS/train_evaluate.txt"
  run evaluate $COVIDCT evaluate --data "$WORK/test" --models "$MODELS" \
      --json "$WORK/eval_test.json" --plots "$RESULTS/evaluate_test"
  cp "$WORK/eval_test.json" "$RESULTS/evaluate_test/eval_test.json"
  # Scanner shift: the version 3 training data spans the test corpus's slice spacing and
  # noise, so a second test corpus lies outside every training range (0.6-0.9 mm slices,
  # heavier noise).
  run evaluate $COVIDCT evaluate --data "$WORK/test_shift" --models "$MODELS" \
      --json "$WORK/eval_test_shift.json" --plots "$RESULTS/evaluate_test_shift"
  cp "$WORK/eval_test_shift.json" "$RESULTS/evaluate_test_shift/eval_test_shift.json"
  REAL=../shared/data/real/cip-copdgene-10002K
  run evaluate $COVIDCT evaluate --models "$MODELS" --image "$REAL/ct-64.nrrd" \
      --lung-labels "$REAL/cip_10002K_lm64_1right_2left_3airway.nii.gz" \
      --json "$WORK/eval_copdgene.json"
  cp "$WORK/eval_copdgene.json" "$RESULTS/evaluate_test/eval_copdgene.json"
fi
if [[ $stage == install || $stage == all ]]; then
  # Ship weights + cards into the package, with the test figures added to the cards
  # (the weights, hence their sha256, are unchanged).
  run install $PY - "$MODELS" "$WORK/eval_test.json" "$WORK/eval_copdgene.json" \
      "$WORK/eval_test_shift.json" <<'PYEOF'
import json, shutil, sys
from dataclasses import replace
from pathlib import Path
from covidct.models.registry import default_weights_dir, list_specs, sha256_file, write_card
models, test, real, shift = (Path(sys.argv[1]), *(json.loads(Path(a).read_text())
                                                   for a in sys.argv[2:5]))
def figures(result: dict, corpus: str) -> dict:
    return {"data": result["data"], "corpus": corpus, "models_sha256": result["models"],
            "command": "covidct evaluate --data TEST --models MODELS --json OUT"}
test_where = figures(test, "covidct synth --cases 24 --seed 2000 --matrix 512 "
                     "--slice-mm 1.25 3 --noise-hu 15 45")
shift_where = figures(shift, "covidct synth --cases 16 --seed 2001 --matrix 512 "
                      "--slice-mm 0.6 0.9 --noise-hu 45 65")
out = default_weights_dir()
for old in out.glob("*.safetensors"):
    old.unlink()
for old in out.glob("*.json"):
    old.unlink()
for spec in list_specs(models):
    assert sha256_file(models / spec.weights_file) == spec.sha256
    keys = ("lung",) if spec.task == "lung" else ("slice", "case")
    extra = {"test_synth": test_where | {k: test["summary"][k] for k in keys},
             "test_synth_scanner_shift": shift_where | {k: shift["summary"][k] for k in keys}}
    if spec.task == "lung":
        extra["real_copdgene_10002K"] = real
    spec = replace(spec, metrics=spec.metrics | extra)
    shutil.copy(models / spec.weights_file, out / spec.weights_file)
    write_card(spec, out / f"{spec.name}.json")
    print(spec.name, spec.sha256, (out / spec.weights_file).stat().st_size, "bytes")
PYEOF
fi
