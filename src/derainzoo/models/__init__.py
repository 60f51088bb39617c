"""derainzoo models; importing this package registers them with timm."""

from derainzoo.models._output import DerainOutput
from derainzoo.models.dual_stage_derain import DualStageDerain

__all__ = ["DerainOutput", "DualStageDerain"]
