"""The Hugging Face Hub layout (timm's ``save_for_hf`` / ``push_to_hf_hub``): ``config.json``,
``model.safetensors`` with its ``.sha256`` sidecar, and a ``README.md`` model card.

Loading is [`create_model`][derainzoo._factory.create_model] with a ``local-dir:`` or ``hf-hub:``
name (or [`from_pretrained`][from_pretrained], the same); the weights go through
the checked loader of [`derainzoo._helpers`][derainzoo._helpers] like every other source.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from derainzoo._helpers import write_checksum

__all__ = ["DEFAULT_HUB_FILENAME", "from_pretrained", "push_to_hub", "save_pretrained"]

DEFAULT_HUB_FILENAME = "model.safetensors"
"""Name of the weights file in the Hub layout of [`save_pretrained`][save_pretrained] (timm's)."""


def save_pretrained(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    model_card: str | None = None,
    model_args: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` in timm's Hugging Face Hub layout: ``config.json``, ``model.safetensors``
    (with its ``.sha256``) and a ``README.md`` model card.

    The folder loads back with [`from_pretrained`][from_pretrained], with
    ``timm.create_model("local-dir:FOLDER")``, or, once uploaded
    ([`push_to_hub`][push_to_hub]), from the Hub.

    Args:
        model: a derainzoo model built by ``create_model`` (it carries its ``pretrained_cfg``).
        folder: destination; created if missing.
        model_card: Markdown for ``README.md``; default: a short card naming the architecture,
            its size and how to load it.
        model_args: constructor arguments that differ from the registered architecture's
            (stored in ``config.json`` so the model is rebuilt the same).

    Returns:
        ``folder`` as a ``pathlib.Path``.
    """
    from timm.models import save_for_hf

    folder = Path(folder)
    save_for_hf(model, str(folder), model_args=dict(model_args or {}), safe_serialization=True)
    write_checksum(folder / DEFAULT_HUB_FILENAME)
    architecture = model.pretrained_cfg.get("architecture", type(model).__name__)
    if model_card is None:
        parameters = sum(parameter.numel() for parameter in model.parameters())
        model_card = (
            f"---\nlibrary_name: timm\nlicense: {model.pretrained_cfg.get('license', 'apache-2.0')}\n"
            "tags: [image-to-image, deraining, derainzoo]\n---\n\n"
            f"# {architecture}\n\nA derainzoo deraining model ({parameters / 1e6:.2f} M parameters): RGB in [0, 1] "
            "in, the derained image out, any size.\n\n```python\nimport derainzoo\n\n"
            f'model = derainzoo.hub.from_pretrained("{folder.name}").eval()\n```\n'
        )
    (folder / "README.md").write_text(model_card)
    return folder


def from_pretrained(source: str | os.PathLike[str], **kwargs: Any) -> nn.Module:
    """Build a model from a folder written by [`save_pretrained`][save_pretrained]
    or a Hugging Face Hub repository in the same layout: ``create_model("local-dir:FOLDER")`` or
    ``create_model("hf-hub:user/name")``, whichever ``source`` is.

    Args:
        source: a local folder, or a Hub repository id (``"user/model"``), which is downloaded
            (and cached) by ``huggingface_hub``.
        **kwargs: passed to the model constructor (overriding ``config.json``'s ``model_args``).

    Returns:
        The model with its weights, in training mode as timm returns it.

    Raises:
        FileNotFoundError: the folder has no ``config.json`` or no ``model.safetensors``.
    """
    from derainzoo._factory import create_model

    prefix = "local-dir" if Path(source).is_dir() else "hf-hub"
    return create_model(f"{prefix}:{source}", **kwargs)


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    model_card: str | None = None,
    commit_message: str = "Add model",
    private: bool = False,
    token: str | None = None,
) -> str:
    """Upload ``model`` to a Hugging Face Hub repository in the layout of
    [`save_pretrained`][save_pretrained] (creating the repository if needed).

    Args:
        model: the model to upload.
        repo_id: ``"user/name"``.
        model_card: Markdown for ``README.md`` (see ``save_pretrained``).
        commit_message: the commit's message.
        private: create the repository private.
        token: a Hub token; default: the one ``huggingface-cli login`` stored.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_pretrained(model, folder, model_card=model_card)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))
