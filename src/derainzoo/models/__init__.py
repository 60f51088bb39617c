"""derainzoo models; importing this package registers them with timm."""

from derainzoo.models.dual_stage_derain import DerainOutput, DualStageDerain

__all__ = ["DerainOutput", "DualStageDerain"]
