#!/usr/bin/env bash
# Kaggle Dogs vs Cats end to end (seed 001): archives in, MobileNetV2 transfer learning
# (augmentation, label smoothing, cosine decay, early stopping, calibration), scored on
# the validation split with and without test-time augmentation, then TTA on the test
# archive and a valid submission.csv out.
#
# Usage: bash cli/cats_vs_dogs.sh
#   With no archives given, it builds a Kaggle-format fixture from real images that
#   ship offline (cli/make_dvc_fixture.py; FIXTURE=lfw: scikit-image's lfw_subset,
#   faces = dog, easy; FIXTURE=fashion: Fashion-MNIST shirts = dog against T-shirts,
#   rendered as photos, hard) and scores the submission against its held-out labels.
# Settings (environment): WORK=out/dvc  TRAIN_ZIP=  TEST_ZIP=  SAMPLE=  (Kaggle's
#   train.zip, test1.zip, sample_submission.csv)  WEIGHTS=imagenet (or none, or a file)
#   SIZE=224  EPOCHS=15  TTA_N=10  CLIP=0.005  FIXTURE=lfw  TRAIN_ARGS=  (more `imgkit
#   train` options; seed 001's own recipe: TRAIN_ARGS="--recipe seed")
set -euo pipefail

WORK=${WORK:-out/dvc}
WEIGHTS=${WEIGHTS:-imagenet}
SIZE=${SIZE:-224}
EPOCHS=${EPOCHS:-15}
TTA_N=${TTA_N:-10}
CLIP=${CLIP:-0.005}
IMGKIT=${IMGKIT:-imgkit}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ -z "${TRAIN_ZIP:-}" ]; then
  python3 "$HERE/make_dvc_fixture.py" "$WORK/fixture" --size "$SIZE" \
    --source "${FIXTURE:-lfw}" >/dev/null
  TRAIN_ZIP="$WORK/fixture/train.zip"
  TEST_ZIP="$WORK/fixture/test.zip"
  SAMPLE="$WORK/fixture/sample_submission.csv"
  TRUTH="$WORK/fixture/test_labels.csv"
fi

$IMGKIT prep "$TRAIN_ZIP" -o "$WORK/data" --val 0.2 --test 0 --overwrite
$IMGKIT prep "$TEST_ZIP" -o "$WORK/test-data" --overwrite
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of extra options
$IMGKIT train "$WORK/data" -o "$WORK/run" --model mobilenetv2 --weights "$WEIGHTS" \
  --size "${SIZE}x${SIZE}" --epochs "$EPOCHS" --overwrite ${TRAIN_ARGS:-}

# Validation log loss without and with TTA, without and with calibration, side by side.
V="$WORK/val"
$IMGKIT predict "$WORK/run" "$WORK/data" --split val --uncalibrated -o "$V/plain.csv"
$IMGKIT tta "$WORK/run" "$WORK/data" --split val -n "$TTA_N" --uncalibrated -o "$V/tta.csv"
$IMGKIT predict "$WORK/run" "$WORK/data" --split val -o "$V/plain_calibrated.csv"
$IMGKIT tta "$WORK/run" "$WORK/data" --split val -n "$TTA_N" -o "$V/tta_calibrated.csv"
$IMGKIT eval "$V/plain.csv" "$V/tta.csv" "$V/plain_calibrated.csv" "$V/tta_calibrated.csv" \
  --truth "$WORK/data" -o "$WORK/eval"

$IMGKIT tta "$WORK/run" "$WORK/test-data" --split unlabeled -n "$TTA_N" -o "$WORK/tta.csv"
submit_args=(-o "$WORK/submission.csv" --clip "$CLIP")
[ -n "${SAMPLE:-}" ] && submit_args+=(--sample "$SAMPLE")
$IMGKIT submit "$WORK/tta.csv" "${submit_args[@]}"

# The fixture's held-out labels score the submission as Kaggle would (log loss).
if [ -n "${TRUTH:-}" ]; then
  python3 - "$WORK/submission.csv" "$TRUTH" <<'PY'
import sys

import numpy as np
import pandas as pd

sub = pd.read_csv(sys.argv[1]).set_index("id")["label"]
truth = pd.read_csv(sys.argv[2]).set_index("id")["label"]
p = np.clip(sub.loc[truth.index].to_numpy(float), 1e-15, 1 - 1e-15)
y = truth.to_numpy(float)
loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
print(f"submission log loss on the fixture's held-out test labels: {loss:.4f} "
      f"(accuracy {np.mean((p > 0.5) == y):.3f}, {len(y)} images)", file=sys.stderr)
PY
fi
echo "$WORK/submission.csv"
