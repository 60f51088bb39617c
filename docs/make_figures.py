"""Generate the documentation figures from real images and the bundled model.

    python docs/make_figures.py --data ../shared/data

Writes web-sized JPEG files to docs/assets/. Uses the pretrained weights bundled with derainzoo
(the default inference model); Rain100L *test* images for the gallery and the real rainy photos
of ``real_rain/`` for the before/after sheet (inference only); a Rain100L *training* background
for the rendered-rain figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image, ImageDraw

from derainzoo.allocator import keep_freed_memory
from derainzoo.data import PairedImageFolder, render_rain, sample_rain_params
from derainzoo.data.rain_renderer import RAIN_STYLES
from derainzoo.image_io import folder_images, load_image, to_batch
from derainzoo.inference import DEFAULT_MODEL, default_model, derain
from derainzoo.layers import ClusteredNonLocalWindowAttention, cluster_order, rgb_to_luma, spherical_kmeans
from derainzoo.models import RoutedDerain

ASSETS = Path(__file__).resolve().parent / "assets"


def to_image(tensor: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, H, W)`` in [0, 1] to an RGB PIL image."""
    array = tensor.detach().clamp(0, 1).mul(255).round().byte()
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return Image.fromarray(rearrange(array, "c h w -> h w c").numpy())


def labelled_row(images: list[Image.Image], labels: list[str], width: int = 320) -> Image.Image:
    resized = [image.resize((width, round(image.height * width / image.width)), Image.LANCZOS) for image in images]
    height = resized[0].height
    canvas = Image.new("RGB", (width * len(resized), height + 18), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (image, label) in enumerate(zip(resized, labels)):
        canvas.paste(image, (index * width, 18))
        draw.text((index * width + 4, 3), label, fill="black")
    return canvas


def gallery(model, test_set: PairedImageFolder, stems: list[str]) -> None:
    rows = []
    for stem in stems:
        rainy, clean, _ = test_set[test_set.stems.index(stem)]
        with torch.no_grad():
            derained = model(rainy[None])[0]
        rows.append(
            labelled_row(
                [to_image(rainy), to_image(derained), to_image(clean)],
                [f"rainy (Rain100L test {stem})", f"derained ({DEFAULT_MODEL})", "ground truth"],
            )
        )
    stack_rows(rows).save(ASSETS / "gallery.jpg", quality=85)


def mask_figure(model, rainy: torch.Tensor, clean: torch.Tensor) -> None:
    with torch.no_grad():
        prior = torch.sigmoid(model.mask_head.prior_logits(rainy[None]))[0]
        mask = model.mask_head(rainy[None])[0]
    rain_layer = (rgb_to_luma((rainy - clean).clamp_min(0)[None])[0] * 4).clamp(0, 1)
    labelled_row(
        [to_image(rainy), to_image(rain_layer), to_image(prior), to_image(mask)],
        ["rainy input", "true rain layer (x4)", "morphological prior", "final mask (trained head)"],
        width=300,
    ).save(ASSETS / "mask_head.jpg", quality=85)


def clustering_figure(model, rainy: torch.Tensor) -> None:
    """Colour every stage-2 pixel by its cluster and outline the pixels of one window."""
    block = next(m for m in model.modules() if isinstance(m, ClusteredNonLocalWindowAttention))
    captured = {}
    handle = block.register_forward_hook(lambda module, inputs, output: captured.setdefault("x", inputs[0]))
    with torch.no_grad():
        model(rainy[None])
    handle.remove()
    features = captured["x"]
    height, width = features.shape[-2:]
    with torch.no_grad():
        keys = block.qkv(rearrange(features, "b c h w -> b (h w) c")).chunk(3, dim=-1)[1]
        assignment = spherical_kmeans(keys, block.num_clusters, block.kmeans_iters)
        order, _ = cluster_order(assignment)
    palette = torch.tensor(np.random.default_rng(0).uniform(0.2, 1.0, (block.num_clusters, 3)), dtype=torch.float32)
    cluster_map = rearrange(palette[assignment[0]], "(h w) c -> c h w", h=height)
    window_tokens = block.window_size**2
    # Show a window of the second-largest cluster: the largest one is usually plain background,
    # where a window is just a run of neighbouring pixels.
    sizes = torch.bincount(assignment[0], minlength=block.num_clusters)
    cluster = int(sizes.argsort(descending=True)[1])
    start = int((assignment[0][order[0]] < cluster).sum()) + int(sizes[cluster]) // 2
    window = order[0, start : start + window_tokens]
    highlight = torch.zeros(height * width)
    highlight[window] = 1.0
    # Thicken the marked pixels by one pixel so they stay visible at web size.
    highlight = torch.nn.functional.max_pool2d(rearrange(highlight, "(h w) -> 1 1 h w", h=height), 3, 1, 1)[0, 0] > 0
    shown = torch.nn.functional.interpolate(rainy[None], size=(height, width), mode="area")[0].clone()
    shown[:, highlight] = torch.tensor([1.0, 0.0, 0.0])[:, None]
    labelled_row(
        [to_image(rainy), to_image(cluster_map), to_image(shown)],
        ["rainy input", f"stage-2 clusters (K={block.num_clusters})", f"one window of {window_tokens} pixels (red)"],
        width=320,
    ).save(ASSETS / "clustering.jpg", quality=85)


def stack_rows(rows: list[Image.Image]) -> Image.Image:
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height
    return canvas


def rendered_rain_figure(train_set: PairedImageFolder, stem: str, real_folder: Path) -> None:
    """A training background with Rain100L's rain, the three presets and heavy rain with a fast
    shutter and drizzle; medium rain with each style and with a random mix of styles; five real photos."""
    rainy, clean, _ = train_set[train_set.stems.index(stem)]
    generator = torch.Generator().manual_seed(0)
    renders = [  # (label, preset, options of sample_rain_params)
        ("light", "light", {}),
        ("medium", "medium", {}),
        ("heavy", "heavy", {}),
        ("heavy, short exposure + drizzle", "heavy", {"short_exposure": 1.0, "drizzle": 1.0}),
    ]
    rendered = [
        render_rain(
            clean[None], sample_rain_params(preset, generator, camera_effects=False, **options), generator
        ).rainy[0]
        for _, preset, options in renders
    ]
    top = labelled_row(
        [to_image(rainy)] + [to_image(r) for r in rendered],
        [f"Rain100L train {stem} (real pair)"] + [f"rendered: {label}" for label, _, _ in renders],
    )
    styles = [(style.replace("_", " "), {"styles": [style]}) for style in RAIN_STYLES]
    styles.append(("random styles (p = 0.5)", {"style_probability": 0.5}))
    styled = [
        render_rain(
            clean[None], sample_rain_params("medium", generator, camera_effects=False, **options), generator
        ).rainy[0]
        for _, options in styles
    ]
    per_row = len(renders) + 1  # as wide as the top row
    style_rows = [
        labelled_row(
            [to_image(r) for r in styled[start : start + per_row]],
            [f"medium + {label}" for label, _ in styles[start : start + per_row]],
        )
        for start in range(0, len(styled), per_row)
    ]
    paths = folder_images(real_folder).images[: len(rendered) + 1]
    bottom = labelled_row([load_image(path).convert("RGB") for path in paths], [f"real rain ({p.name})" for p in paths])
    stack_rows([top, *style_rows, bottom]).save(ASSETS / "rain_renderer.jpg", quality=85)


def real_rain_sheet(model, real_folder: Path) -> None:
    """Before/after pairs of every real rainy photo, derained at full resolution by the default model."""
    rows = []
    for path in folder_images(real_folder).images:
        photo = load_image(path).convert("RGB")
        # Tiles keep the 4-megapixel photo within a few GB; they are blended without seams.
        derained = derain(photo, model, tile_size=512 if photo.width * photo.height > 1_000_000 else None)
        rows.append(
            labelled_row([photo, derained], [f"real rain: {path.name}", f"derained ({DEFAULT_MODEL})"], width=480)
        )
    stack_rows(rows).save(ASSETS / "real_rain.jpg", quality=88)


SCALES_SHEET_FACTORS = (1, 2, 3)
SCALES_SHEET_CROP = 256
SCALES_SHEET_LONGEST = 4000  # a 12 MP photo's long side: larger enlargements are left out


def real_rain_scales_sheet(model, real_folder: Path) -> None:
    """Every real photo enlarged 1, 2 and 3 times (bicubic; 2x and 3x stand in for a camera
    original, whose rain is as many times wider and longer), derained by ``derain()`` with its
    default options, shown as 100 % crops from the middle: rainy | derained at each factor."""
    rows = []
    for path in folder_images(real_folder).images:
        photo = to_batch(load_image(path).convert("RGB"))[0]
        crops, labels = [], []
        for factor in SCALES_SHEET_FACTORS:
            if factor * max(photo.shape[-2:]) > SCALES_SHEET_LONGEST:
                continue
            large = photo if factor == 1 else F.interpolate(photo, scale_factor=factor, mode="bicubic").clamp(0, 1)
            derained = derain(large, model)
            height, width = large.shape[-2:]
            top, left = (height - SCALES_SHEET_CROP) // 2, (width - SCALES_SHEET_CROP) // 2
            window = (..., slice(top, top + SCALES_SHEET_CROP), slice(left, left + SCALES_SHEET_CROP))
            crops += [to_image(large[window][0]), to_image(derained[window][0])]
            labels += [f"{path.stem} x{factor} ({width}x{height})", "derained, 100% crop"]
        rows.append(labelled_row(crops, labels, width=SCALES_SHEET_CROP))
    stack_rows(rows).save(ASSETS / "real_rain_scales.jpg", quality=90)


FIGURES = ["gallery", "real_rain", "real_rain_scales", "rain_renderer", "mask", "clustering"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--only", choices=FIGURES, nargs="+", default=FIGURES, help="figures to make (default: all)")
    args = parser.parse_args()
    keep_freed_memory()  # half the time on large photos (benchmarks/bench_allocator.py); a script's peak is no concern
    ASSETS.mkdir(exist_ok=True)
    model = default_model("cpu")
    test_set = PairedImageFolder(args.data / "Rain100L_test")
    rainy, clean, _ = test_set[test_set.stems.index("033")]
    if "gallery" in args.only:
        gallery(model, test_set, ["001", "033", "078"])
    if "real_rain" in args.only:
        real_rain_sheet(model, args.data / "real_rain")
    if "real_rain_scales" in args.only:
        real_rain_scales_sheet(model, args.data / "real_rain")
    if "rain_renderer" in args.only:
        rendered_rain_figure(PairedImageFolder(args.data / "Rain100L_train"), "017", args.data / "real_rain")
    # The block figures show one network: the default router's light expert (rain_mix).
    network = model.light if isinstance(model, RoutedDerain) else model
    if "mask" in args.only:
        mask_figure(network, rainy, clean)
    if "clustering" in args.only:
        clustering_figure(network, rainy)
    print(f"figures written to {ASSETS}")


if __name__ == "__main__":
    main()
