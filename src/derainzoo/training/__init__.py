"""Training utilities used by ``examples/train.py``: checkpoints and schedules."""

from derainzoo.training.checkpoint import load_training_state, save_training_state
from derainzoo.training.schedule import warmup_cosine_schedule

__all__ = ["load_training_state", "save_training_state", "warmup_cosine_schedule"]
