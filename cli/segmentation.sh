#!/usr/bin/env bash
# Binary segmentation end to end (seed 004): image+mask pairs in, a U-Net with a
# MobileNetV2 encoder trained, new images segmented (masks + overlay panels), and the
# masks scored against the truth with a quality gate.
#
# Usage: bash cli/segmentation.sh
#   With no IMAGES/MASKS given, it builds real tiles from stardist's nuclei image and
#   mask (cli/make_nuclei_fixture.py; the wheel is read as a zip, fetched with pip if
#   stardist is not installed) and holds every 4th tile out as the new images.
# Settings (environment): WORK=out/seg  IMAGES=  MASKS=  NEW=  NEW_MASKS=  (folders;
#   NEW_MASKS optional: without it nothing is scored)  WEIGHTS=imagenet (or none, or a
#   file)  SIZE=128  EPOCHS=  LR=  (default: the model's, 150 epochs with early
#   stopping, lr 1e-3 with cosine decay)  LOSS=bce+dice  VAL=0.3  FAIL_UNDER=0.5
#   TRAIN_ARGS=  (more `imgkit train` options; the seed's own recipe is
#   TRAIN_ARGS="--lr 1e-5 --epochs 25 --batch-size 8 --loss bce", which does not learn)
set -euo pipefail

WORK=${WORK:-out/seg}
WEIGHTS=${WEIGHTS:-imagenet}
SIZE=${SIZE:-128}
EPOCHS=${EPOCHS:-}
LR=${LR:-}
LOSS=${LOSS:-bce+dice}
VAL=${VAL:-0.3}
FAIL_UNDER=${FAIL_UNDER:-0.5}
IMGKIT=${IMGKIT:-imgkit}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ -z "${IMAGES:-}" ]; then
  python3 "$HERE/make_nuclei_fixture.py" "$WORK/fixture" --tile "$SIZE" >/dev/null
  IMAGES="$WORK/fixture/images"
  MASKS="$WORK/fixture/masks"
  NEW="$WORK/fixture/new"
  NEW_MASKS="$WORK/fixture/new_masks"
fi
NEW=${NEW:-$IMAGES}

$IMGKIT prep "$IMAGES" --masks "$MASKS" -o "$WORK/data" --val "$VAL" --test 0 --overwrite
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of extra options
$IMGKIT train "$WORK/data" -o "$WORK/run" --model unet-mobilenetv2 --weights "$WEIGHTS" \
  --size "${SIZE}x${SIZE}" ${EPOCHS:+--epochs "$EPOCHS"} ${LR:+--lr "$LR"} --loss "$LOSS" --overwrite \
  ${TRAIN_ARGS:-}
rm -rf "$WORK/masks" "$WORK/overlays"
$IMGKIT segment "$WORK/run" "$NEW" -o "$WORK/masks" --overlay "$WORK/overlays" --tta
if [ -n "${NEW_MASKS:-}" ]; then
  $IMGKIT eval "$WORK/masks" --truth "$NEW_MASKS" -o "$WORK/eval" --fail-under "iou=$FAIL_UNDER"
fi
