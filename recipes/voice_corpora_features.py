"""Encode every clip of the five emotional-speech corpora once and keep the features in the cache.

    nice -n 10 python recipes/voice_corpora_features.py [--data ../shared/data] [--encoder whisper]
        [--pool 5] [--augment none] [--limit N]

Resumable: a re-run skips finished shards. Prints the store folder (pass it to the training recipe) and the
time and disk it took. See :mod:`dmd_pipeline.data.corpus_features` for what is stored.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from dmd_pipeline.data.corpora import read_corpora
from dmd_pipeline.data.corpus_features import extract_store
from dmd_pipeline.features import default_cache_dir


def make_encoder(name: str):
    """The encoder of a name: ``whisper`` (tiny.en final state), ``whisper-base-layers`` (Whisper base in torch,
    float32: embedding, blocks 1-5 and the final LN, 7 x 512), ``whisper-base-final`` (Whisper base's final
    state through CTranslate2 int8: distorted by int8, see dmd_pipeline.extractors.whisper_layers)."""
    from dmd_pipeline.data.corpus_features import FinalStateEncoder

    if name == "whisper":
        return FinalStateEncoder()
    if name == "whisper-base-layers":
        import torch

        from dmd_pipeline.extractors.whisper_layers import WhisperLayersExtractor

        torch.set_num_threads(1)  # a shared 2-core machine: one thread per job
        return WhisperLayersExtractor()
    if name == "whisper-base-final":
        from dmd_pipeline.model_files import whisper_base_dir

        return FinalStateEncoder(str(whisper_base_dir()), name=name)
    raise SystemExit(f"unknown encoder {name!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--encoder", default="whisper")
    ap.add_argument("--pool", type=int, default=5)
    ap.add_argument("--augment", default="none")
    ap.add_argument("--cache", type=Path, default=None, help="cache root (default: the dmd cache dir)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N clips (a timing run)")
    ap.add_argument("--corpora", default=None, help="comma list of corpora (default: all five)")
    args = ap.parse_args()

    table = read_corpora(args.data, **({"corpora": tuple(args.corpora.split(","))} if args.corpora else {}))
    files = [c.path for c in table.clips][: args.limit]
    from dmd_pipeline.data.audio_augment import augmenter

    t0 = time.perf_counter()
    out = extract_store(
        files,
        make_encoder(args.encoder),
        args.cache or default_cache_dir(),
        pool=args.pool,
        augment=args.augment,
        augment_fn=augmenter(args.augment),
    )
    size = sum(p.stat().st_size for p in out.iterdir())
    print(
        f"store {out}: {len(files)} clips, {time.perf_counter() - t0:.0f} s this run, {size / 1e6:.1f} MB; "
        f"disk free {shutil.disk_usage(out).free / 1e9:.1f} GB"
    )


if __name__ == "__main__":
    main()
