"""DMD core: the network, the graph-distillation units, the losses and the official-weight loader."""

from dmd_pipeline.models.distill import GraphDistillation
from dmd_pipeline.models.dmd import DMD, DMDSystem
from dmd_pipeline.models.losses import compute_losses
from dmd_pipeline.models.official import load_official_state_dict

__all__ = ["DMD", "DMDSystem", "GraphDistillation", "compute_losses", "load_official_state_dict"]
