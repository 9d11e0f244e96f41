"""Ship the five-corpora voice model: export a `train_voice_corpora.py --fold final` checkpoint into the
package (float16, sha256 recorded), describe it, measure it with the shipped weights on valid (per corpus,
from the feature stores, through the model object's own normalisation), fit its temperature on valid and,
once (``--test``), score RAVDESS's test actors 19-21.

    python recipes/export_voice_corpora_model.py --run runs/voice_final --train-json runs/voice_final.json \\
        --loco-json runs/voice_loco.json --store <dir>:ravdess,emovo,turev,urdu --store <dir>:nemo [--test]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_common import record_calibration  # noqa: E402
from train_voice_corpora import SETTING, WINDOW_S, load_table_and_feats  # noqa: E402

from dmd_pipeline.data.corpora import CLASSES  # noqa: E402
from dmd_pipeline.data.store_inputs import audio_input  # noqa: E402
from dmd_pipeline.training.partial_labels import per_corpus_reports  # noqa: E402

NAME = "voice-emotion-5corpora"
DESCRIPTION = (
    "Categorical emotion (8 RAVDESS classes) from the voice only: DMD (voice_emotion network, statistics "
    "pooling head, learned softmax mix of 7 LayerNorm-ed Whisper base encoder states at 10 Hz, "
    "whisper-base-layers-s5), trained on the train speakers of five acted/broadcast corpora in five languages "
    "(RAVDESS en, nEMO pl, EMOVO it, TurEV-DB tr, URDU ur) with a class-balanced 8-class cross-entropy, "
    "time masking and feature noise; text and vision inputs are zeros. See MODEL_CARD.md."
)
LICENCE = (
    "trained on RAVDESS (CC BY-NC-SA 4.0), nEMO (CC BY-NC-SA 4.0), EMOVO (research use), TurEV-DB "
    "(CC BY-NC-ND 4.0) and URDU (research use): these weights are for non-commercial research use only"
)


def store_logits(model, feats, rows: np.ndarray) -> np.ndarray:
    """Raw logits of store rows through the loaded (shipped) model: its declared normalisation, its length."""
    la = int(model.config.seq_lens[1])
    lt, lv = int(model.config.seq_lens[0]), int(model.config.seq_lens[2])
    dims = model.dims
    out = []
    for a in range(0, len(rows), 64):
        batch = [
            {
                "text": np.zeros((lt, dims["text"]), np.float32),
                "audio": audio_input(feats.frames[i], model.audio_norm, la),
                "vision": np.zeros((lv, dims["vision"]), np.float32),
            }
            for i in rows[a : a + 64]
        ]
        out.append(model.predict(batch, calibrated=False))
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--train-json", type=Path, required=True)
    ap.add_argument("--loco-json", type=Path, default=None)
    ap.add_argument("--store", action="append", required=True)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--dest", type=Path, default=Path("dmd_pipeline/assets/models") / NAME)
    ap.add_argument("--test", action="store_true", help="score RAVDESS test actors 19-21 (once, at the end)")
    ap.add_argument("--export", action="store_true", help="(re-)export the checkpoint before measuring")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.calibration import fit_calibration
    from dmd_pipeline.feature_config import ExtractionConfig
    from dmd_pipeline.models.checkpoint import export_checkpoint, read_checkpoint_meta

    train = json.loads(args.train_json.read_text())
    loco = json.loads(args.loco_json.read_text()) if args.loco_json else None
    if args.export or not (args.dest / "config.json").is_file():
        # only what decides the model's audio features (the rest follows the user's options)
        spec_config = {"acoustic": SETTING, "aligned": False, "seq_lens": [8, 40, 8], "sample_rate": 16000}
        ExtractionConfig(**{**spec_config, "seq_lens": (8, 40, 8)})  # a valid setting
        meta = {
            "name": NAME,
            "task": "classification",
            "role": "emotion",
            "description": DESCRIPTION,
            "licence_note": LICENCE,
            "class_names": list(CLASSES),
            "modalities": ["audio"],
            "text_input": "zeros (not used by this model)",
            "vision_input": "zeros (not used by this model)",
            "aligned": False,
            "analysis_window_s": WINDOW_S,
            "feature_spec": {
                "feature_spec": {
                    "config": spec_config,
                    "acoustic": SETTING,
                    "audio_rate_hz": 10.0,
                    "dims": {"text": 384, "audio": 3584, "vision": 66},
                },
                "aligned": False,
                "seq_lens": [8, 40, 8],
                "task": "classification",
                "class_names": list(CLASSES),
            },
            "training_data": {
                "kind": "corpus feature stores (recipes/voice_corpora_features.py, pool 5)",
                "corpora": ["ravdess", "nemo", "emovo", "turev", "urdu"],
                "split": "train speakers of every corpus; selection on the valid speakers",
            },
            "train_config": {
                "epochs": train["epochs"],
                "best_epoch": train["best_epoch"],
                "seed": train["seed"],
                "norm": train["norm"],
                "batch_size": 32,
                "learning_rate": train.get("lr", 5e-4),
                "optimizer": "AdamW",
                "weight_decay": train.get("weight_decay", 0.0),
                "schedule": "one-cycle cosine, 10 % warm-up" if train.get("cosine") else "constant",
                "augment": "time masking + feature noise (the preset's)" if train.get("augment") else "none",
                "clips_per_corpus_per_epoch": train.get("cap", 1000),
                "loss": "DMD loss, task terms = class-balanced cross-entropy over "
                + (
                    "all 8 classes"
                    if train.get("full_softmax")
                    else "the clip's corpus's classes (partial-label)"
                ),
                "torch_threads": 1,
            },
            "training_time": {"seconds": train.get("seconds"), "device": "cpu", "torch_threads": 1},
            "training_history": train.get("history"),
            "metrics_training_run": {"valid_uar": train["valid_uar"]},
        }
        export_checkpoint(args.run, args.dest, weights_dtype="float16", meta_updates=meta)
    model = load_model(args.dest)
    table, feats = load_table_and_feats(args)
    ok = feats.ok
    va = table.rows("valid")
    va = va[ok[va]]
    masks = table.corpus_masks()
    logits = store_logits(model, feats, va)
    reps = per_corpus_reports(table.y[va], logits, table.corpus[va], masks)
    cal = fit_calibration(
        logits,
        table.y[va],
        {"split": "valid speakers of the five corpora", "data": "corpus feature stores", "n_classes": 8},
    )
    block = cal.to_meta()
    cfg_path = args.dest / "config.json"
    meta = json.loads(cfg_path.read_text())
    if loco:  # leave-one-corpus-out UAR of the same recipe (train_voice_corpora.py --fold loco)
        meta["loco_uar"] = loco.get("loco_uar")
        meta["loco_recipe"] = {
            k: loco.get(k)
            for k in (
                "norm",
                "epochs",
                "cap",
                "seed",
                "lr",
                "weight_decay",
                "cosine",
                "augment",
                "full_softmax",
            )
        }
    earlier_test = (meta.get("metrics") or {}).get("test")
    meta["metrics"] = {
        "valid": reps,
        "valid_uar": {k: r["uar"] for k, r in reps.items()},
        "measured_with": "the shipped float16 weights on the feature-store frames "
        "(recipes/export_voice_corpora_model.py)",
    }
    if earlier_test is not None and not args.test:  # measured once; a re-run keeps it
        meta["metrics"]["test"] = earlier_test
    if args.test:
        te = table.rows("test")
        te = te[ok[te]]
        tl = store_logits(model, feats, te)
        rep = per_corpus_reports(table.y[te], tl, table.corpus[te], masks)["ravdess"]
        meta["metrics"]["test"] = rep
        print(
            f"TEST RAVDESS actors 19-21: n {rep['n']} acc {rep['accuracy']:.3f} UAR {rep['uar']:.3f} "
            f"macro-F1 {rep['macro_f1']:.3f}\nconfusion {rep['confusion_matrix']}"
        )
    from dmd_pipeline.utils import atomic_write_json

    atomic_write_json(cfg_path, meta)
    record_calibration(args.dest, block)
    read_checkpoint_meta(args.dest)
    print(json.dumps({"valid_uar": meta["metrics"]["valid_uar"], "calibration": block}, indent=1))


if __name__ == "__main__":
    main()
