#!/usr/bin/env bash
# Reproduce the bundled voice-emotion model dmd_pipeline/assets/models/ravdess-voice-emotion (MODEL_CARD.md).
#
#   bash recipes/train_emotion_model.sh          # from the repository root, ../shared beside it
#   DATA=/path/to/ravdess bash recipes/train_emotion_model.sh
#
# Steps (outputs go to runs/, git-ignored):
#   1. baseline + acoustic-setting choice on the validation actors 17-18 (logistic regression on mean+std
#      pooled frames; test actors 19-21 are scored once, for the chosen setting only);
#   2. `dmd extract` of all 1,259 clips with the chosen setting (Whisper encoder states), unaligned,
#      audio resampled to the model's length; resumable, through the feature cache;
#   3. `dmd train`: DMD classification (8 classes), audio only (text and vision fed as zeros), selection by
#      validation UAR (hyper-parameters chosen with recipes/emotion_dmd_sweep.py on valid only);
#   4. export (float16, no machine paths) into the package;
#   5. `dmd evaluate` of the shipped model on the media of valid and test, as anyone can re-run it;
#   6. calibration: a temperature fitted on the valid actors' media (minimum NLL) and stored in the model's
#      config.json; the test actors are measured once (ECE before/after), nothing is fitted on them.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/ravdess}
RUN=${RUN:-runs/ravdess-voice-emotion}
FEATS=${FEATS:-runs/ravdess_whisper50}
DEST=dmd_pipeline/assets/models/ravdess-voice-emotion
SEQ_LENS=${SEQ_LENS:-8,50,8}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export DMD_CACHE_DIR=${DMD_CACHE_DIR:-runs/cache}  # extraction of step 2 is re-used by step 5
BIN=.venv/bin
mkdir -p runs

# 1. acoustic setting + baseline
$BIN/python recipes/emotion_feature_choice.py --data "$DATA" --json runs/emotion_feature_choice.json

# 2. features of every clip (the transcript column is encoded too; the model does not use it)
$BIN/dmd extract "$DATA" --labels "$DATA/labels.csv" --out "$FEATS" --unaligned --seq-lens "$SEQ_LENS" \
  --acoustic whisper -j 2 --quiet

# 3. training: preset voice_emotion (see dmd_pipeline/config.py), audio only, 4 s analysis windows,
#    a seed ensemble of 3 members (seeds 1111..1113), each at most 20 epochs
$BIN/dmd train --data "$FEATS/unaligned_8.pkl" --out "$RUN" --preset voice_emotion \
  --modalities audio --window-s 4 --ensemble 3 --epochs 20 --seed 1111 --device cpu --threads 2 \
  --weights-dtype float32 --no-eval-test

# 4. export into the package
$BIN/python recipes/export_emotion_model.py --run "$RUN" --dest "$DEST" --name ravdess-voice-emotion \
  --labels "$DATA/labels.csv" --max-members 3 --summary runs/export_emotion_summary.json

# 5. the model card's numbers, re-measurable by anyone
for split in valid test; do
  $BIN/dmd evaluate --model ravdess-voice-emotion --labels "$DATA/labels.csv" --split "$split" --json \
    | tee "runs/eval_ravdess-voice-emotion_${split}.json"
done

# 6. calibration on the validation actors (the weights and their sha256 are unchanged)
$BIN/python recipes/calibrate_model.py --model "$DEST" --labels "$DATA/labels.csv" --split valid \
  --measure-split test --summary runs/calibrate_emotion_summary.json
