#!/usr/bin/env bash
# The Kaggle loop on Dogs vs Cats: a single-split model against K-fold cross-validation
# (out-of-fold predictions, the fold ensemble), a blend of two recipes' fold ensembles
# with weights fitted on their OOF predictions, and one round of pseudo-labels.
#
# Usage: bash cli/cross_validation.sh
#   With no archives given, it builds the hard Kaggle-format fixture from real images
#   (cli/make_dvc_fixture.py --source fashion) and scores every predictions file on its
#   held-out labels (log loss, as Kaggle does), in one table on stderr.
# Settings (environment): WORK=out/cv  TRAIN_ZIP=  TEST_ZIP=  SAMPLE=  WEIGHTS=imagenet
#   SIZE=224  FOLDS=5  TRAIN_ARGS=  (the first recipe: more `imgkit train` options)
#   SECOND_SIZE=$SIZE  SECOND_ARGS="--fine-tune-last 0 --augment none --lr 1e-3"
#   (the second recipe, also the pseudo-label round's; SECOND_ARGS= for none)
#   MIN_CONFIDENCE=0.95  (pseudo-labels)  FIXTURE=fashion
set -euo pipefail

WORK=${WORK:-out/cv}
WEIGHTS=${WEIGHTS:-imagenet}
SIZE=${SIZE:-224}
FOLDS=${FOLDS:-5}
SECOND_SIZE=${SECOND_SIZE:-$SIZE}
SECOND_ARGS=${SECOND_ARGS---fine-tune-last 0 --augment none --lr 1e-3}
MIN_CONFIDENCE=${MIN_CONFIDENCE:-0.95}
IMGKIT=${IMGKIT:-imgkit}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ -z "${TRAIN_ZIP:-}" ]; then
  python3 "$HERE/make_dvc_fixture.py" "$WORK/fixture" --source "${FIXTURE:-fashion}" >/dev/null
  TRAIN_ZIP="$WORK/fixture/train.zip"
  TEST_ZIP="$WORK/fixture/test.zip"
  SAMPLE="$WORK/fixture/sample_submission.csv"
  TRUTH="$WORK/fixture/test_labels.csv"
fi
MODEL=(--model mobilenetv2 --weights "$WEIGHTS" --size "${SIZE}x${SIZE}")
MODEL2=(--model mobilenetv2 --weights "$WEIGHTS" --size "${SECOND_SIZE}x${SECOND_SIZE}")
TEST=("$WORK/test-data" --split unlabeled)

$IMGKIT prep "$TRAIN_ZIP" -o "$WORK/data" --val 0.2 --test 0 --overwrite
$IMGKIT prep "$TEST_ZIP" -o "$WORK/test-data" --overwrite

# The single-split model: trained on 80%, early stopping and temperature on the 20%.
# shellcheck disable=SC2086  # TRAIN_ARGS and SECOND_ARGS are lists of options
$IMGKIT train "$WORK/data" -o "$WORK/single" "${MODEL[@]}" --overwrite ${TRAIN_ARGS:-}
$IMGKIT predict "$WORK/single" "${TEST[@]}" -o "$WORK/single.csv"

# K folds of the same images (no image read again), the same recipe on each fold, and
# the fold ensemble; then a second recipe on the same folds, and their blend.
$IMGKIT prep "$WORK/data" --folds "$FOLDS" -o "$WORK/data-folds" --overwrite
# shellcheck disable=SC2086
$IMGKIT cv "$WORK/data-folds" -o "$WORK/cv" "${MODEL[@]}" ${TRAIN_ARGS:-}
$IMGKIT predict "$WORK/cv" "${TEST[@]}" -o "$WORK/cv.csv"
# shellcheck disable=SC2086
$IMGKIT cv "$WORK/data-folds" -o "$WORK/cv2" "${MODEL2[@]}" $SECOND_ARGS
$IMGKIT predict "$WORK/cv2" "${TEST[@]}" -o "$WORK/cv2.csv"
$IMGKIT blend "$WORK/cv.csv" "$WORK/cv2.csv" -o "$WORK/blend.csv" \
  --fit "$WORK/cv/oof.csv,$WORK/cv2/oof.csv" --truth "$WORK/data-folds"

# One pseudo-label round for the second recipe: the ensemble's confident test
# predictions train in every fold (never validated on).
$IMGKIT prep "$WORK/data-folds" "$WORK/cv.csv" --pseudo --min-confidence "$MIN_CONFIDENCE" \
  -o "$WORK/data-pseudo" --overwrite
# shellcheck disable=SC2086
$IMGKIT cv "$WORK/data-pseudo" -o "$WORK/cv2-pseudo" "${MODEL2[@]}" $SECOND_ARGS
$IMGKIT predict "$WORK/cv2-pseudo" "${TEST[@]}" -o "$WORK/cv2-pseudo.csv"

submit_args=(-o "$WORK/submission.csv" --clip 0.005)
[ -n "${SAMPLE:-}" ] && submit_args+=(--sample "$SAMPLE")
$IMGKIT submit "$WORK/blend.csv" "${submit_args[@]}"

if [ -n "${TRUTH:-}" ]; then
  python3 - "$WORK" "$TRUTH" <<'PY'
import sys
from pathlib import Path

import numpy as np
import pandas as pd

work, truth = Path(sys.argv[1]), pd.read_csv(sys.argv[2]).set_index("id")["label"]
for name in ("single", "cv", "cv2", "blend", "cv2-pseudo"):
    pred = pd.read_csv(work / f"{name}.csv")
    y = truth.loc[[int(Path(p).stem) for p in pred["path"]]].to_numpy(float)
    p = np.clip(pred[pred.columns[-1]].to_numpy(float), 1e-15, 1 - 1e-15)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    print(f"{name:>11}: test log loss {loss:.4f}, accuracy {np.mean((p > 0.5) == y):.3f}",
          file=sys.stderr)
PY
fi
echo "$WORK/submission.csv"
