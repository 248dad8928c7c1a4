#!/usr/bin/env bash
# The dropout study (seed 002): the same small CNN trained with and without dropout on
# Fashion-MNIST, their curves overlaid in one plot and their final metrics in one table.
#
# Usage: bash cli/dropout_study.sh            (full data, about 5 minutes on a laptop CPU)
# Settings (environment): WORK=out/dropout  EPOCHS=15  LIMIT=  IDX_DIR=  TRAIN_ARGS=
set -euo pipefail

WORK=${WORK:-out/dropout}
EPOCHS=${EPOCHS:-15}
IMGKIT=${IMGKIT:-imgkit}

prep_args=(fashion-mnist -o "$WORK/data" --overwrite)
[ -n "${IDX_DIR:-}" ] && prep_args+=(--idx-dir "$IDX_DIR")
[ -n "${LIMIT:-}" ] && prep_args+=(--limit "$LIMIT")
$IMGKIT prep "${prep_args[@]}"

for rate in 0.5 0; do
  # --patience past the epoch count: the study wants the whole curve, overfitting included.
  $IMGKIT train "$WORK/data" -o "$WORK/dropout-$rate" --model small-cnn --dropout "$rate" \
    --epochs "$EPOCHS" --patience "$((EPOCHS + 1))" --overwrite ${TRAIN_ARGS:-}
done
$IMGKIT compare "$WORK/dropout-0.5" "$WORK/dropout-0" -o "$WORK/study"
