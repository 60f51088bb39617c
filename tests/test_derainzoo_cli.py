"""The console script's torch-free front end: it answers without importing torch, and the defaults
it restates are the package's."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import derainzoo
import derainzoo_cli
from derainzoo.backends import BACKENDS
from derainzoo.image_io import OUTPUT_FORMATS
from derainzoo.inference import DEFAULT_MODEL, PRECISIONS, derain
from derainzoo.scaling import AUTO_SCALE_LONG_SIDE
from derainzoo.tiling import DEFAULT_MEMORY_BUDGET

from .helpers import assert_same_weights


def test_restated_defaults_are_the_packages() -> None:
    assert derainzoo_cli.DEFAULT_MODEL == DEFAULT_MODEL
    assert derainzoo_cli.BACKENDS == BACKENDS
    assert derainzoo_cli.PRECISIONS == PRECISIONS
    assert derainzoo_cli.AUTO_SCALE_LONG_SIDE == AUTO_SCALE_LONG_SIDE
    assert derainzoo_cli.DEFAULT_MEMORY_BUDGET_GB * 1024**3 == DEFAULT_MEMORY_BUDGET
    assert derainzoo_cli.OUTPUT_FORMAT_NAMES == tuple(sorted(OUTPUT_FORMATS))
    assert derainzoo_cli.DEFAULT_SCALE == inspect.signature(derain).parameters["scale"].default


def test_version_is_the_packages(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        derainzoo_cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"derainzoo {derainzoo.__version__}"


@pytest.mark.parametrize(
    ("argv", "exit_code", "expected"),
    [
        (["--help"], 0, "{derain,eval,export,list}"),
        (["derain", "--help"], 0, "--scale"),
        (["derain"], 2, "the following arguments are required: inputs"),
        (["derain", "x.png", "--backend", "tensorrt"], 2, "invalid choice: 'tensorrt'"),
        (["eval"], 2, "the following arguments are required: --data"),
    ],
)
def test_help_and_argument_mistakes_never_import_torch(argv, exit_code, expected) -> None:
    # A fresh interpreter: this test process imported torch long ago.
    probe = (
        "import sys, derainzoo_cli\n"
        "try:\n"
        f"    derainzoo_cli.main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code, 'torch' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip().endswith(f"exit {exit_code} False"), result.stderr
    assert expected in result.stdout + result.stderr


def test_a_parsed_command_runs_in_the_package(capsys) -> None:
    assert derainzoo_cli.main(["list"]) == 0
    assert DEFAULT_MODEL in capsys.readouterr().out


def test_export_defaults_to_one_network_the_default_model_s_light_expert() -> None:
    from derainzoo.models import RoutedDerain

    exported = derainzoo.create_model(derainzoo_cli.DEFAULT_EXPORT_MODEL, pretrained=True)
    default = derainzoo.create_model(DEFAULT_MODEL, pretrained=True)
    assert not isinstance(exported, RoutedDerain) and isinstance(default, RoutedDerain)
    assert_same_weights(default.light, exported)
