"""derainzoo: single-image deraining models and their building blocks.

Importing ``derainzoo`` registers its models with timm, so ``timm.create_model`` builds them
too (timm has no plugin discovery: the import is needed).
"""

from derainzoo import layers, models
from derainzoo._factory import create_model, list_models, list_pretrained
from derainzoo._version import __version__
from derainzoo.inference import derain
from derainzoo.models import DerainOutput, DualStageDerain
from derainzoo.self_ensemble import SelfEnsemble

__all__ = [
    "DerainOutput",
    "DualStageDerain",
    "SelfEnsemble",
    "__version__",
    "create_model",
    "derain",
    "layers",
    "list_models",
    "list_pretrained",
    "models",
]
