#!/usr/bin/env bash
# Reproduce the bundled default voice model dmd_pipeline/assets/models/voice-emotion-5corpora (MODEL_CARD.md).
#
#   bash recipes/train_voice_model.sh          # from the repository root, ../shared beside it
#
# Steps (outputs in runs/voice5, git-ignored; the feature stores in the dmd cache, never in the repository):
#   1. Whisper base's 7 encoder states of every clip of the five corpora, 10 Hz (pool 5), once, resumable
#      (two stores: RAVDESS + EMOVO + TurEV-DB + URDU, and nEMO, extracted separately; ~25 min of one core
#      each on an idle machine);
#   2. the baseline: logistic regression on mean+std pooled block-3 states, three normalisations,
#      speaker-valid and leave-one-corpus-out (recipes/voice_emotion_cv.py);
#   3. the DMD model (recipes/train_voice_corpora.py): speaker-valid training with selection by the mean
#      per-corpus valid UAR (this run is the shipped checkpoint), then leave-one-corpus-out with the same
#      recipe and fewer steps (3 epochs, 600 clips per corpus per epoch: the time budget of one shared core);
#   4. export into the package (float16, sha256 recorded), valid metrics with the shipped weights, temperature
#      fitted on valid, RAVDESS test actors 19-21 scored once (recipes/export_voice_corpora_model.py).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=${OUT:-runs/voice5}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1

# 1. feature stores (prints each store's folder on its last line)
A=$($BIN/python recipes/voice_corpora_features.py --encoder whisper-base-layers --pool 5 \
  --corpora ravdess,emovo,turev,urdu | tail -1 | sed -E 's/^store ([^:]+):.*/\1/')
B=$($BIN/python recipes/voice_corpora_features.py --encoder whisper-base-layers --pool 5 \
  --corpora nemo | tail -1 | sed -E 's/^store ([^:]+):.*/\1/')
STORES=(--store "$A:ravdess,emovo,turev,urdu" --store "$B:nemo")

# 2. baseline
$BIN/python recipes/voice_emotion_cv.py "${STORES[@]}" --layers 3 --norms none,speaker,running:1 --heads lr \
  --json "$OUT/baseline_l3.json"

# 3. DMD: speaker-valid (the shipped checkpoint), then leave-one-corpus-out
$BIN/python recipes/train_voice_corpora.py "${STORES[@]}" --fold valid --norm clip --epochs 7 --cap 800 \
  --out "$OUT/valid_clip" --json "$OUT/valid_clip.json"
$BIN/python recipes/train_voice_corpora.py "${STORES[@]}" --fold loco --norm clip --epochs 3 --cap 600 \
  --json "$OUT/loco_clip.json"

# 4. ship (the test actors are scored here, once)
$BIN/python recipes/export_voice_corpora_model.py --run "$OUT/valid_clip" --train-json "$OUT/valid_clip.json" \
  --loco-json "$OUT/loco_clip.json" "${STORES[@]}" --export --test
