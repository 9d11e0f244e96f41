"""What the export recipes do after measuring a shipped model: record its metrics (and, for a classifier,
its calibration) in its config.json and print (and optionally save) a JSON summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def record_shipped_metrics(dest: Path, shipped: dict[str, Any], measured_with: str, **extra: Any) -> None:
    """Write the shipped model's valid/test metrics into ``dest/config.json`` (the training run's metrics kept
    as ``metrics_training_run``; the weights and their recorded sha256 stay untouched); ``extra`` keys are
    added to the meta as they are."""
    from dmd_pipeline.models.checkpoint import CONFIG_NAME
    from dmd_pipeline.utils import atomic_write_json

    cfg_path = dest / CONFIG_NAME
    meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    meta["metrics_training_run"] = meta.get("metrics")
    meta.update(extra)
    meta["metrics"] = {"valid": shipped["valid"], "test": shipped["test"], "measured_with": measured_with}
    atomic_write_json(cfg_path, meta)


def report_summary(dest: Path, results: dict[str, Any], path: Path | None, **extra: Any) -> None:
    """Print ``{"dest", "weights_bytes", "results", **extra}`` as JSON, and write it to ``path`` when given."""
    summary = {
        "dest": str(dest),
        "weights_bytes": (dest / "model.safetensors").stat().st_size,
        "results": results,
        **extra,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if path:
        path.write_text(text + "\n", encoding="utf-8")


def record_calibration(dest: Path, block: dict[str, Any]) -> None:
    """Write a fitted ``calibration`` block into ``dest/config.json`` (the weights and their recorded
    ``weights_sha256`` stay untouched: the temperature is applied on top of the network's logits), then read
    the file back as a load would, so a block the loader refuses never ships."""
    from dmd_pipeline.models.checkpoint import CONFIG_NAME, read_checkpoint_meta
    from dmd_pipeline.utils import atomic_write_json

    cfg_path = dest / CONFIG_NAME
    meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    meta["calibration"] = block
    atomic_write_json(cfg_path, meta)
    read_checkpoint_meta(dest)
