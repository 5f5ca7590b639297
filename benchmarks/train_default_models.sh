#!/usr/bin/env bash
# Train, calibrate and evaluate the shipped default models (covidct/models/weights).
#
#   benchmarks/train_default_models.sh [corpus|lung|classifier|calibrate|evaluate|install|all]
#
# Each stage's output goes to benchmarks/results/train_<stage>.txt. Seeds: training corpus
# 1000 (128 cases; validation = 20 % of its cases, split by case with seed 0), test corpus
# 2000 (other scanner parameters: 512 matrix, thinner slices, more noise). The test corpus
# is used only for the figures in the model cards, never for thresholds or early stopping.
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
fi
MODELS="$WORK/final"
# The lung and classifier runs are independent (one checkpoint per task) and ran side by
# side (OMP_NUM_THREADS=1 for the lung run). The classifier's thresholds are then
# calibrated with the final lung model.
if [[ $stage == lung || $stage == all ]]; then
  : > "$RESULTS/train_lung.txt"
  # Version 2 (shipped): from scratch on 184 cases (the severe sets included) with 30 %
  # slices without lung (version 1 drew lung above the apices), 20 epochs, one thread
  # (it ran beside the classifier run).
  OMP_NUM_THREADS=1 run lung $COVIDCT -v train lung --data "$WORK/train_lung2" --out "$MODELS" \
      --arch unet_vgg16 --width 0.125 --epochs 20 --steps-per-epoch 150 --batch-size 12 \
      --lr 3e-3 --seed 0 --slices-per-case 32 --patience 6 --empty-slices 0.3 --no-progress
  # Version 2 against version 1 (sha256 609fd399..., 12 epochs on train + train_severe) on
  # version 2's 37 validation cases, 3D Dice through covidct.lung.
  run lung $PY benchmarks/lung_model_selection.py --data "$WORK/train_lung2" \
      --candidate "$MODELS/lung-unet-vgg16-w0125.json" \
      --incumbent "$WORK/final_v1/lung-unet-vgg16-w0125.json" \
      --out "$RESULTS/lung_model_selection.txt"
fi
if [[ $stage == classifier || $stage == all ]]; then
  : > "$RESULTS/train_classifier.txt"
  # Version 2 (shipped): from scratch on the training corpus plus 48 mild cases, 30 epochs.
  OMP_NUM_THREADS=1 run classifier $COVIDCT -v train classifier --data "$WORK/train_cls2" \
      --out "$MODELS" --arch resnet18 --width 0.5 --epochs 30 --steps-per-epoch 150 \
      --batch-size 16 --lr 1e-3 --seed 0 --slices-per-case 64 --patience 8 --no-progress
  # Version 2 against version 1 (sha256 444d4e7f..., 34 epochs on train only), both with the
  # version 2 lung model, on the calibration corpus (neither trained on it).
  for v in final_v1 "$(basename "$MODELS")"; do
    mkdir -p "$WORK/select_$v"
    cp "$MODELS"/lung-unet-vgg16-w0125.* "$WORK/$v"/classifier-resnet18-w05.* "$WORK/select_$v/"
    run classifier $COVIDCT evaluate --data "$WORK/calibrate" --models "$WORK/select_$v" \
        --no-baseline --json "$RESULTS/classifier_selection_$v.json"
  done
fi
if [[ $stage == calibrate || $stage == all ]]; then
  : > "$RESULTS/train_calibrate.txt"
  # Thresholds on the classifier's validation cases, with the lung model's masks (as at
  # inference); the weights (and their sha256) are unchanged, the card is rewritten.
  # Calibration cases: the classifier's validation split plus a separate calibration corpus
  # (seed 3000, training-corpus scanner parameters; 25 validation cases alone put the case
  # threshold above mild COVID cases).
  run calibrate $PY - "$MODELS" "$WORK/train_cls2" "$WORK/calibrate" <<'PYEOF'
import sys
from dataclasses import replace
from pathlib import Path
from covidct.models.registry import find_spec, load_bundle, write_card
from covidct.train.calibrate import calibrate_models
from covidct.train.datasets import discover_cases
models, data, extra = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
bundle = load_bundle(models)
spec = bundle.classifier.spec
val_ids = set(spec.training["val_case_ids"])
records = [r for r in discover_cases(data) if r.case_id in val_ids] + [
    replace(r, case_id=f"{extra.name}/{r.case_id}") for r in discover_cases(extra)]
slice_t, case_t, details = calibrate_models(bundle, records)
details["lung_masks"] = f"predicted by {bundle.lung.spec.name} ({bundle.lung.sha256[:12]})"
spec = replace(spec, slice_threshold=round(slice_t, 6), case_threshold=round(case_t, 6),
               training=spec.training | {"calibration": details})
write_card(spec, models / f"{spec.name}.json")
print(f"{len(records)} validation cases: slice threshold {slice_t:.4f}, case threshold "
      f"{case_t:.4f}\n{details}")
PYEOF
fi
if [[ $stage == evaluate || $stage == all ]]; then
  : > "$RESULTS/train_evaluate.txt"
  run evaluate $COVIDCT evaluate --data "$WORK/test" --models "$MODELS" \
      --json "$WORK/eval_test.json" --plots "$RESULTS/evaluate_test"
  cp "$WORK/eval_test.json" "$RESULTS/evaluate_test/eval_test.json"
  REAL=../shared/data/real/cip-copdgene-10002K
  run evaluate $COVIDCT evaluate --models "$MODELS" --image "$REAL/ct-64.nrrd" \
      --lung-labels "$REAL/cip_10002K_lm64_1right_2left_3airway.nii.gz" \
      --json "$WORK/eval_copdgene.json"
  cp "$WORK/eval_copdgene.json" "$RESULTS/evaluate_test/eval_copdgene.json"
fi
if [[ $stage == install || $stage == all ]]; then
  # Ship weights + cards into the package, with the test figures added to the cards
  # (the weights, hence their sha256, are unchanged).
  run install $PY - "$MODELS" "$WORK/eval_test.json" "$WORK/eval_copdgene.json" <<'PYEOF'
import json, shutil, sys
from dataclasses import replace
from pathlib import Path
from covidct.models.registry import default_weights_dir, list_specs, sha256_file, write_card
models, test, real = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), \
    json.loads(Path(sys.argv[3]).read_text())
summary = test["summary"]
where = {"data": test["data"], "corpus": "covidct synth --cases 24 --seed 2000 --matrix 512 "
         "--slice-mm 1.25 3 --noise-hu 15 45", "command": "covidct evaluate --data TEST "
         "--models MODELS --json OUT", "models_sha256": test["models"]}
out = default_weights_dir()
for old in out.glob("*.safetensors"):
    old.unlink()
for old in out.glob("*.json"):
    old.unlink()
for spec in list_specs(models):
    assert sha256_file(models / spec.weights_file) == spec.sha256
    extra = ({"test_synth": where | {"lung": summary["lung"]},
              "real_copdgene_10002K": real} if spec.task == "lung" else
             {"test_synth": where | {"slice": summary["slice"], "case": summary["case"]}})
    spec = replace(spec, metrics=spec.metrics | extra)
    shutil.copy(models / spec.weights_file, out / spec.weights_file)
    write_card(spec, out / f"{spec.name}.json")
    print(spec.name, spec.sha256, (out / spec.weights_file).stat().st_size, "bytes")
PYEOF
fi
