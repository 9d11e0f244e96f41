"""Analysis of media files with a trained DMD model: results, batches, reports.

* :mod:`.result`   typed, versioned result (``AnalysisResult``, schema ``schemas/analysis_result.schema.json``)
* :mod:`.registry` ``load_model(name_or_dir)``: bundled models and model folders
* :mod:`.analyze`  one clip -> ``AnalysisResult`` (utterances, scores, edges, cues)
* :mod:`.batch`    many files: workers, resume, summary.csv / errors.csv
* :mod:`.report`   HTML page per clip + index.html (matplotlib Agg PNGs, local files only)

Submodules import heavy libraries lazily; importing this package is cheap.
"""

from __future__ import annotations

from dmd_pipeline.analysis.result import SCHEMA_VERSION, AnalysisResult, validate_result

__all__ = ["SCHEMA_VERSION", "AnalysisResult", "validate_result"]
