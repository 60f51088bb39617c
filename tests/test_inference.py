"""derain(): every input kind comes back in kind; tiling; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import derainzoo
from derainzoo.data import PairedImageFolder
from derainzoo.image_io import load_image
from derainzoo.inference import (
    DEFAULT_MODEL,
    default_model,
    derain,
    eval_mode,
    native_bf16,
    resolve_device,
    resolve_precision,
)
from derainzoo.metrics import psnr_y, quantize
from derainzoo.tiling import choose_tile_size, estimate_inference_memory, tiled_forward

from .helpers import RecordingIdentity, smooth_image, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def as_pil(batch: torch.Tensor) -> Image.Image:
    return Image.fromarray((batch[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_pil_rgb_round_trip_matches_the_model(model) -> None:
    image = as_pil(smooth_image(21, 34))
    result = derain(image, model)
    assert isinstance(result, Image.Image) and result.mode == "RGB" and result.size == image.size
    batch = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = (model(batch).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(result), expected)


def test_pil_grayscale_and_alpha_are_kept(model) -> None:
    rgb = as_pil(smooth_image(16, 20))
    gray = derain(rgb.convert("L"), model)
    assert gray.mode == "L" and gray.size == (20, 16)
    rgba = rgb.convert("RGBA")
    alpha = Image.fromarray(np.tile(np.arange(20, dtype=np.uint8) * 10, (16, 1)))
    rgba.putalpha(alpha)
    result = derain(rgba, model)
    assert result.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(result.getchannel("A")), np.asarray(alpha))
    assert derain(rgb.convert("P"), model).mode == "RGB"
    assert derain(rgb.convert("CMYK"), model).mode == "RGB"


def test_pil_exif_orientation_is_applied(model) -> None:
    image = as_pil(smooth_image(10, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.info["exif"] = exif.tobytes()
    image.getexif()[0x0112] = 6
    assert derain(image, model).size == (10, 30)


def test_sixteen_bit_grayscale_stays_sixteen_bit_and_uses_its_full_range(model) -> None:
    plane = (np.linspace(0, 1, 24 * 18).reshape(18, 24) * 65535).astype(np.uint16)
    result = derain(Image.fromarray(plane), model)
    assert result.mode == "I;16" and result.size == (24, 18)
    values = np.asarray(result)
    assert values.std() > 20 * 257  # not clipped to white as a naive 8-bit conversion would
    assert len(np.unique(values % 257)) > 10  # more than 256 levels: truly 16-bit
    # The same pixels as the 8-bit path, at 16-bit precision.
    eight_bit = np.asarray(derain(Image.fromarray((plane // 257).astype(np.uint8)), model), dtype=float)
    assert np.abs(values / 257 - eight_bit).mean() < 1.0


def test_a_path_is_read_and_a_pil_image_returned(model, tmp_path) -> None:
    as_pil(smooth_image(30, 40)).save(tmp_path / "photo.png")
    from_path = derain(tmp_path / "photo.png", model)
    assert isinstance(from_path, Image.Image)
    expected = derain(load_image(tmp_path / "photo.png"), model)
    assert np.array_equal(np.asarray(from_path), np.asarray(expected))
    assert np.array_equal(np.asarray(derain(str(tmp_path / "photo.png"), model)), np.asarray(expected))
    with pytest.raises(ValueError, match="missing.png: no such image file"):
        derain(tmp_path / "missing.png", model)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_numpy_arrays_keep_their_dtype(model, dtype) -> None:
    image = smooth_image(15, 17)[0].permute(1, 2, 0).numpy()
    if np.issubdtype(dtype, np.integer):
        image = (image * np.iinfo(dtype).max).round()
    result = derain(image.astype(dtype), model)
    assert result.dtype == dtype and result.shape == (15, 17, 3)


def test_tensors_keep_shape_and_dtype(model) -> None:
    image = smooth_image(12, 13)
    assert derain(image[0], model).shape == (3, 12, 13)
    batch = derain(torch.cat([image, image.flip(-1)]), model)
    assert batch.shape == (2, 3, 12, 13) and batch.dtype == torch.float32
    as_bytes = derain((image * 255).round().to(torch.uint8), model)
    assert as_bytes.dtype == torch.uint8
    assert derain(image.double(), model).dtype == torch.float64


def test_model_mode_is_restored(model) -> None:
    model.train()
    derain(smooth_image(8, 8), model)
    assert model.training
    model.eval()


def test_eval_mode_restores_the_mode_it_found_even_after_an_error() -> None:
    module = torch.nn.Dropout()
    for initially_training in (True, False):
        module.train(initially_training)
        with pytest.raises(RuntimeError, match="inside"), eval_mode(module):
            assert not module.training
            raise RuntimeError("inside")
        assert module.training is initially_training
    with eval_mode(None):  # an optional model that is absent
        pass


def test_single_tile_covering_the_image_equals_whole_image(model) -> None:
    image = smooth_image(40, 56)
    whole = derain(image, model)
    assert torch.equal(derain(image, model, tile_size=64), whole)


def test_small_tiles_stay_close_to_whole_image(model) -> None:
    image = smooth_image(96, 128)
    whole = derain(image, model)
    tiled = derain(image, model, tile_size=64, tile_overlap=16)
    assert (tiled - whole).abs().mean() < 0.02


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (torch.full((1, 3, 8, 8), float("nan")), ValueError, "NaN"),
        (torch.full((1, 3, 8, 8), float("inf")), ValueError, "NaN or infinite"),
        (torch.full((1, 3, 8, 8), 200.0), ValueError, "divide 0..255 data by 255"),
        (np.full((8, 8, 3), np.nan, dtype=np.float32), ValueError, "NaN"),
        (Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32)), ValueError, "NaN"),  # mode "F"
        (torch.rand(1, 4, 8, 8), ValueError, r"\(B, 3, H, W\)"),
        (torch.rand(1, 3, 0, 8), ValueError, "empty"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), TypeError, "float"),
        (np.zeros((8, 8)), ValueError, r"\(H, W, 3\)"),
        (np.zeros((8, 8, 3), dtype=np.int64), TypeError, "uint8, uint16 or float"),
        ([[0.0]], TypeError, "PIL.Image.Image"),
    ],
)
def test_bad_input_is_refused(model, image, error, message) -> None:
    with pytest.raises(error, match=message):
        derain(image, model)


@pytest.mark.parametrize(
    ("tile_size", "overlap", "message"),
    [
        (4, 0, "tile_size must be"),
        (64, 40, "tile_overlap 40 is more than half"),
        (64, -1, "tile_overlap must be"),
        (-8, None, "tile_size must be"),
        (16.0, None, "tile_size must be"),
    ],
)
def test_bad_tile_settings_are_refused(model, tile_size, overlap, message) -> None:
    with pytest.raises(ValueError, match=message):
        derain(smooth_image(16, 16), model, tile_size=tile_size, tile_overlap=overlap)


def test_small_tiles_get_a_fitting_default_overlap(model) -> None:
    image = smooth_image(40, 40)
    # The default overlap is min(32, tile/4): a tile of 8 overlaps by 2, not by an unset 32.
    torch.testing.assert_close(derain(image, model, tile_size=8), tiled_forward(model.eval(), image, 8, 2).clamp(0, 1))
    torch.testing.assert_close(derain(image, model, tile_size=0), derain(image, model, tile_size=64))


@pytest.mark.parametrize(
    ("model_name", "min_gain", "mean_gain"),
    # Measured gains on 001-003: tiny.rain100l (the Rain100L specialist) all above 6 dB;
    # the default rain_mix 9.2, 8.1 and 5.2 dB after its two GPU phases (before phase 5).
    [("dual_stage_derain_tiny", 4.0, 6.0), (DEFAULT_MODEL, 3.0, 6.0)],
)
def test_bundled_models_remove_rain_from_unseen_real_images(rain100l_test, model_name, min_gain, mean_gain) -> None:
    """The bundled models, on Rain100L test images they never trained on, gain dB of Y-PSNR over
    the rainy input."""
    model = derainzoo.create_model(model_name, pretrained=True)
    dataset = PairedImageFolder(rain100l_test, stems=["001", "002", "003"])
    gains = []
    for rainy, clean, _ in (dataset[index] for index in range(3)):
        derained = derain(rainy, model)
        assert derained.shape == rainy.shape
        gains.append(
            (psnr_y(quantize(derained[None]), clean[None]) - psnr_y(quantize(rainy[None]), clean[None])).item()
        )
    assert min(gains) > min_gain and sum(gains) / 3 > mean_gain


def test_default_model_is_channels_last_and_computes_what_the_plain_layout_does() -> None:
    import derainzoo

    fast = default_model("cpu")
    kernels = [p for p in fast.parameters() if p.dim() == 4]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    plain = derainzoo.create_model(DEFAULT_MODEL, pretrained=True).eval()
    assert all(p.is_contiguous() for p in plain.parameters())
    image = smooth_image(37, 53)
    with torch.inference_mode():
        torch.testing.assert_close(derain(image), plain(image).clamp(0, 1), rtol=0, atol=1e-5)


def test_automatic_tiles_leave_no_seams_with_the_bundled_model() -> None:
    """A budget that fits tiles of 256 but not the whole image: derain() tiles by itself, with the
    default overlap (32), and the result stays close to the whole image (bundled tiny model)."""
    image = smooth_image(300, 400)
    model = derainzoo.create_model("dual_stage_derain_tiny", pretrained=True)
    budget = estimate_inference_memory(model, 300, 300)
    assert choose_tile_size(model, 300, 400, budget) == 256
    tiled, whole = derain(image, model, memory_budget=budget), derain(image, model, tile_size=0)
    assert not torch.equal(tiled, whole)  # it really tiled
    difference = (tiled - whole).abs()
    assert difference.mean() < 1 / 255 and difference.max() < 4 / 255


def test_tiles_leave_no_seams_with_the_bundled_model() -> None:
    """On a smooth image, tiles of 96 with 32 px overlap stay within 1/255 of the whole-image
    result on average and within 4/255 everywhere (measured: 0.05/255 and 1/255)."""
    image = smooth_image(200, 260)
    model = derainzoo.create_model("dual_stage_derain_tiny", pretrained=True)
    whole = derain(image, model)
    tiled = derain(image, model, tile_size=96, tile_overlap=32)
    difference = (tiled - whole).abs()
    assert difference.mean() < 1 / 255 and difference.max() < 4 / 255


def test_resolve_device_checks_names_and_follows_the_model() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None, torch.nn.Linear(2, 2)) == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            resolve_device("cuda")


def test_bf16_precision_runs_the_model_under_autocast_and_stays_close(model) -> None:
    image = smooth_image(40, 52)
    seen_dtypes = []
    handle = model.register_forward_hook(
        lambda module, args, output: seen_dtypes.append(
            torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        )
    )
    try:
        full = derain(image, model)
        half = derain(image, model, precision="bf16")
    finally:
        handle.remove()
    assert seen_dtypes == [None, torch.bfloat16]
    assert half.dtype == image.dtype and half.shape == image.shape
    assert not torch.equal(half, full) and float((half - full).abs().max()) < 0.05


def test_auto_precision_is_bf16_only_where_the_device_computes_it_natively(monkeypatch) -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not native_bf16(cpu) and resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert native_bf16(cpu) and resolve_precision("auto", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        derain(smooth_image(8, 8), torch.nn.Identity(), precision="fp16")


def test_the_budget_counts_the_input_and_the_blending_buffer_and_a_tiled_pass_releases_memory() -> None:
    image = torch.rand(1, 3, 300, 300)
    # The pass takes 90,000 bytes; the float32 input and the blending buffer 1,080,000 each.
    held = 2 * 3 * 300 * 300 * 4
    roomy = RecordingIdentity(inference_bytes_per_pixel=1)
    derain(image, roomy, memory_budget=held + 100_000, scale=1)
    assert roomy.sizes == [(300, 300)] and roomy.releases == 0
    tight = RecordingIdentity(inference_bytes_per_pixel=1)
    # The pass alone would fit in this budget, not beside what is held: tiles of the smallest size.
    torch.testing.assert_close(derain(image, tight, memory_budget=held + 40_000, scale=1), image)
    assert len(tight.sizes) == 4 and set(tight.sizes) == {(256, 256)} and tight.releases == 1
    # Scale-aware: the downscaled copy is counted too (150 x 150: 270,000 bytes, blending the same).
    scaled = RecordingIdentity(inference_bytes_per_pixel=1)
    derain(image, scaled, memory_budget=1_080_000 + 2 * 270_000 + 22_500, scale=0.5)
    assert scaled.sizes == [(150, 150)] and scaled.releases == 0
    # One byte less and the pass is planned in tiles (one, as the image is smaller than a tile).
    derain(image, scaled, memory_budget=1_080_000 + 2 * 270_000 + 22_500 - 1, scale=0.5)
    assert scaled.sizes == [(150, 150)] * 2 and scaled.releases == 1
