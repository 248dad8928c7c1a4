#!/usr/bin/env bash
# Breast histopathology (IDC) end to end (seed 003): Kaggle's patient-folder layout in,
# patient-level splits, frozen VGG16 + the seed's head trained with balanced class
# weights, a decision threshold chosen on val for F1, then precision/recall/F1,
# balanced accuracy and ROC/PR AUC on the held-out patients.
#
# Usage: bash cli/histopathology.sh
#   IDC=path/to/IDC_regular_ps50_idx5 (Kaggle's <patient>/<0|1>/*_class<N>.png).
#   With no IDC given, it builds an IDC-layout fixture from a real H&E image
#   (cli/make_idc_fixture.py: stardist's histo.jpg tiled, labels from nuclei density;
#   STARDIST_WHEEL=path/to/stardist-0.9.2-*.whl, else it is fetched with pip download).
# Settings (environment): WORK=out/idc  IDC=  WEIGHTS=imagenet (or none, or a file)
#   SIZE=50  EPOCHS=10  VAL=0.15  TEST=0.15 (fractions of patients' patches)  THRESHOLD=auto  FINE_TUNE=0 (4: a second phase that fine-tunes
#   block 5 at LR 1e-5 from the first run's weights)  TRAIN_ARGS=  (more train options)
set -euo pipefail

WORK=${WORK:-out/idc}
WEIGHTS=${WEIGHTS:-imagenet}
SIZE=${SIZE:-50}
EPOCHS=${EPOCHS:-10}
THRESHOLD=${THRESHOLD:-auto}
VAL=${VAL:-0.15}
TEST=${TEST:-0.15}
FINE_TUNE=${FINE_TUNE:-0}
IMGKIT=${IMGKIT:-imgkit}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ -z "${IDC:-}" ]; then
  fixture_args=("$WORK/fixture")
  [ -n "${STARDIST_WHEEL:-}" ] && fixture_args+=(--wheel "$STARDIST_WHEEL")
  python3 "$HERE/make_idc_fixture.py" "${fixture_args[@]}" >/dev/null
  IDC="$WORK/fixture"
fi

# Patients, not patches, are split: no patient's patches on both sides.
$IMGKIT prep "$IDC" -o "$WORK/data" --val "$VAL" --test "$TEST" --overwrite
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of extra options
$IMGKIT train "$WORK/data" -o "$WORK/run" --model vgg16 --weights "$WEIGHTS" \
  --size "${SIZE}x${SIZE}" --epochs "$EPOCHS" --class-weight balanced \
  --threshold "$THRESHOLD" --overwrite ${TRAIN_ARGS:-}
RUN="$WORK/run"
if [ "$FINE_TUNE" != "0" ]; then
  # Second phase: start from the first run's weights, unfreeze the top block, low LR.
  # shellcheck disable=SC2086
  $IMGKIT train "$WORK/data" -o "$WORK/run-ft" --model vgg16 --weights "$WORK/run/model.keras" \
    --size "${SIZE}x${SIZE}" --epochs "$EPOCHS" --class-weight balanced \
    --fine-tune-last "$FINE_TUNE" --lr 1e-5 --threshold "$THRESHOLD" --overwrite ${TRAIN_ARGS:-}
  RUN="$WORK/run-ft"
fi

$IMGKIT predict "$RUN" "$WORK/data" --split test -o "$WORK/test_preds.csv"
# Accuracy, per-class precision/recall/F1, balanced accuracy, ROC AUC, PR AUC.
$IMGKIT eval "$WORK/test_preds.csv" --truth "$WORK/data" -o "$WORK/eval"
