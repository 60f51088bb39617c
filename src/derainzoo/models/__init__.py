"""derainzoo models; importing this package registers them with timm."""

from derainzoo.models._output import DerainOutput
from derainzoo.models.dual_stage_derain import DualStageDerain
from derainzoo.models.nafnet_lite import NAFNetLite
from derainzoo.models.routed_derain import RoutedDerain

__all__ = ["DerainOutput", "DualStageDerain", "NAFNetLite", "RoutedDerain"]
