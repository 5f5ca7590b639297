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
  mkdir -p "$WORK/train_lung"
  for d in "$WORK"/train/case_*; do ln -sfn "$d" "$WORK/train_lung/$(basename "$d")"; done
  for d in "$WORK"/train_severe/case_*; do
    ln -sfn "$d" "$WORK/train_lung/severe_$(basename "$d")"; done
fi
MODELS="$WORK/final"
# The lung and classifier runs are independent (one checkpoint per task) and ran side by
# side (OMP_NUM_THREADS=1 for the lung run). The classifier's thresholds are then
# calibrated with the final lung model.
if [[ $stage == lung || $stage == all ]]; then
  : > "$RESULTS/train_lung.txt"
  run lung $COVIDCT -v train lung --data "$WORK/train_lung" --out "$MODELS" \
      --arch unet_vgg16 --width 0.125 --epochs 12 --steps-per-epoch 150 --batch-size 12 \
      --lr 3e-3 --seed 0 --slices-per-case 32 --patience 5 --no-progress
  # Tried and not kept: resuming this run (--resume --epochs 20) on 32 severer cases more
  # (seed 1002, severity 0.3-0.7) with --empty-slices 0.3. On the redrawn validation split
  # its epochs scored 0.940-0.950 against 0.951 for this run's weights, so the loop kept
  # these (the second run in train_lung.txt; its weights are these, sha256 609fd399...).
fi
if [[ $stage == classifier || $stage == all ]]; then
  : > "$RESULTS/train_classifier.txt"
  run classifier $COVIDCT -v train classifier --data "$WORK/train" --out "$MODELS" \
      --arch resnet18 --width 0.5 --epochs 24 --steps-per-epoch 150 --batch-size 16 \
      --lr 1e-3 --seed 0 --slices-per-case 64 --patience 8 --no-progress
  # The validation AUC was still rising at epoch 24: 10 more epochs (the cosine schedule
  # continues over 34); the best validation epoch (34, AUC 0.9723 vs 0.9707) is shipped.
  run classifier $COVIDCT -v train classifier --data "$WORK/train" --out "$MODELS" \
      --arch resnet18 --width 0.5 --epochs 34 --steps-per-epoch 150 --batch-size 16 \
      --lr 1e-3 --seed 0 --slices-per-case 64 --patience 8 --resume --no-progress
fi
if [[ $stage == calibrate || $stage == all ]]; then
  : > "$RESULTS/train_calibrate.txt"
  # Thresholds on the classifier's validation cases, with the lung model's masks (as at
  # inference); the weights (and their sha256) are unchanged, the card is rewritten.
  run calibrate $PY - "$MODELS" "$WORK/train" <<'PYEOF'
import sys
from dataclasses import replace
from pathlib import Path
from covidct.models.registry import find_spec, load_bundle, write_card
from covidct.train.calibrate import calibrate_models
from covidct.train.datasets import discover_cases
models, data = Path(sys.argv[1]), Path(sys.argv[2])
bundle = load_bundle(models)
spec = bundle.classifier.spec
val_ids = set(spec.training["val_case_ids"])
records = [r for r in discover_cases(data) if r.case_id in val_ids]
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
