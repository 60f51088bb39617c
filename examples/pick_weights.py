"""Pick the weights of a fine-tuning run to export, by a rule stated up front, from its ``log.jsonl``.

    python examples/pick_weights.py runs/rain_mix_p14 --floor val=35.0

A run of ``examples/train.py`` with ``--init-weights`` logs its starting weights as step 0, and with
``--keep-validated`` keeps the EMA weights of every validation (``ema_stepNNNNNN.safetensors``).
This script prints every validation as a markdown table (the table of a model card) with the
verdict of the rule on each, then the pick. A validation qualifies when

* its mean PSNR over the validation sets is above the start's (one Y-channel dB of each set counts
  alike, as for ``best_ema``);
* every ``--floor SET=DB`` holds (e.g. ``val=35.0``: Rain100L validation at 35 dB or more);
* with ``--watch-photos`` in the run, the mean change on the photos is at least the start's, and no
  photo's change fell more than ``--photo-tolerance`` (a fraction) below its start: a mean can hold
  while the photos with the heaviest rain lose streak removal (``rain_mix`` card, phase 11). The
  change is ``--photo-measure change`` (mean |output - input|, the default) or ``detail_change``
  (the same with each photo's brightness shift taken off: on real rain the shift is most of the
  change, so ``change`` rewards darkening; ``rain_mix`` card, phase 38);
* with per-image errors in the log (``SET_error_each``: the mean of output - ground truth of each
  validation image, in levels of 255), no image of an ``--error-set`` (default ``val``, the
  held-out real pairs) has an |error| grown more than ``--error-tolerance`` levels over its start:
  a mean PSNR can hold while one flat scene turns uniformly darker (``rain_mix`` card, phase 13:
  Rain100L val 199 went from -2.5 to -6.0 levels, and a test image lost 3 dB to it). The rendered
  sets are left out by default: there an image's error is mostly rain left behind, and it swings
  by 5-7 levels between validations of one run, which their PSNR already scores.

The pick is the qualifying validation with the best mean; if none qualifies the start stays (exit
status 0 either way: refusing is an answer). ``--start-log`` reads the step-0 record from another
log: for a run started before ``train.py`` logged one, or to judge the weights a run started from
(a blend scored by a one-step run, ``rain_mix`` card, phases 27, 30 and 34) against the weights before
them. The run's own step 0 is then a candidate like its other validations, and the start's row
reads ``0 (start)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PHOTO_MEASURES = ("change", "detail_change")
"""What the real-photo guard can read: ``photos_<measure>`` of a validation record."""


def photo_label(measure: str) -> str:
    """The name a photo measure goes by in the table and the verdicts, e.g. ``"photos detail change"``."""
    return f"photos {measure.replace('_', ' ')}"


def read_validations(log: Path) -> list[dict]:
    """The validation records of a ``log.jsonl`` (those with PSNR scores), in order."""
    if not log.is_file():
        raise SystemExit(f"{log}: no such log (a run of examples/train.py writes OUT/log.jsonl)")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [record for record in records if any(key.endswith("_psnr") for key in record)]


def set_names(record: dict) -> list[str]:
    """The validation sets a record scores, e.g. ``["val", "val_heavy"]``."""
    return [key.removesuffix("_psnr") for key in record if key.endswith("_psnr")]


def mean_psnr(record: dict) -> float:
    """The mean PSNR over the record's validation sets, each set counting alike."""
    names = set_names(record)
    return sum(record[f"{name}_psnr"] for name in names) / len(names)


def brightness_drifts(record: dict, start: dict, error_sets: list[str], tolerance: float) -> list[str]:
    """The images of ``error_sets`` whose |mean error| grew more than ``tolerance`` levels over the
    start's, as ``"SET/IMAGE darker/brighter (START -> NOW)"``; ``record`` logs every image the start does."""
    drifts = []
    for name in error_sets:
        for image, before in start[f"{name}_error_each"].items():
            after = record[f"{name}_error_each"][image]
            if abs(after) > abs(before) + tolerance:
                direction = "darker" if after < before else "brighter"
                drifts.append(f"{name}/{image} {direction} ({before:+.1f} -> {after:+.1f})")
    return drifts


def refusals(
    record: dict,
    start: dict,
    floors: dict[str, float],
    photo_tolerance: float,
    error_sets: list[str],
    error_tolerance: float,
    photo_measure: str = "change",
) -> list[str]:
    """Why the rule refuses ``record`` against ``start``; empty when it qualifies. ``photo_measure``
    names the logged photo measure the guard reads (``photos_<measure>``)."""
    reasons = []
    if mean_psnr(record) <= mean_psnr(start):
        reasons.append("mean not above the start's")
    for name, floor in floors.items():
        if record[f"{name}_psnr"] < floor:
            reasons.append(f"{name} below {floor:g}")
    key, label = f"photos_{photo_measure}", photo_label(photo_measure)
    if key in start and key not in record:
        reasons.append("photos not watched")
    elif key in start:
        if record[key] < start[key]:
            reasons.append(f"{label} below the start's")
        start_each, each = start.get(f"{key}_each", {}), record.get(f"{key}_each", {})
        if set(start_each) - set(each):
            reasons.append("per-photo changes not logged")
        fallen = [
            stem for stem, change in start_each.items() if stem in each and each[stem] < (1 - photo_tolerance) * change
        ]
        if fallen:
            reasons.append(f"photo {', '.join(fallen)} fell > {photo_tolerance:.0%}")
    if any(set(start[f"{name}_error_each"]) - set(record.get(f"{name}_error_each", {})) for name in error_sets):
        reasons.append("per-image errors not logged")
    elif drifts := brightness_drifts(record, start, error_sets, error_tolerance):
        reasons.append(f"error grew > {error_tolerance:g} levels: {', '.join(drifts)}")
    return reasons


def parse_floor(text: str) -> tuple[str, float]:
    """``"val=35.0"`` -> ``("val", 35.0)``."""
    name, _, value = text.partition("=")
    try:
        floor = float(value)
    except ValueError:
        floor = None
    if not name or floor is None:
        raise argparse.ArgumentTypeError(f"--floor takes SET=DB, e.g. val=35.0; got {text!r}")
    return name, floor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="output folder of examples/train.py (with log.jsonl)")
    parser.add_argument("--floor", type=parse_floor, action="append", default=[], help="SET=DB, repeatable")
    parser.add_argument("--photo-tolerance", type=float, default=0.1, help="largest fall of one photo's change")
    parser.add_argument(
        "--photo-measure",
        choices=PHOTO_MEASURES,
        default="change",
        help="the photo change the guard reads: mean |output - input| (change) or the same with each photo's "
        "brightness shift taken off (detail_change, logged by train.py since phase 38 of the rain_mix card)",
    )
    parser.add_argument(
        "--error-tolerance",
        type=float,
        default=2.0,
        help="largest growth of one validation image's |mean error| (output - ground truth), in levels of 255",
    )
    parser.add_argument(
        "--error-set",
        action="append",
        dest="error_sets",
        help="a validation set whose per-image errors are guarded, repeatable (default: val, the held-out real pairs)",
    )
    parser.add_argument("--start-log", type=Path, help="read the step-0 record from this log instead")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    validations = read_validations(args.run / "log.jsonl")
    start_log = args.start_log or args.run / "log.jsonl"
    starts = [
        record for record in (read_validations(start_log) if args.start_log else validations) if record["step"] == 0
    ]
    if not starts:
        raise SystemExit(
            f"{start_log}: no step-0 record; train.py logs one for runs with "
            "--init-weights (for an older run, pass --start-log with the log of a run from the same weights)"
        )
    start = starts[-1]
    floors = dict(args.floor)
    names = set_names(start)
    unknown = sorted(set(floors) - set(names))
    if unknown:
        raise SystemExit(f"--floor names sets the log does not score: {unknown}; it scores {names}")
    photo_key = f"photos_{args.photo_measure}"
    photos = photo_key in start
    if args.photo_measure != "change" and not photos and "photos_change" in start:
        raise SystemExit(
            f"--photo-measure {args.photo_measure}: the start's record has no {photo_key} "
            "(logged by train.py since phase 38 of the rain_mix card; use --start-log with a newer score)"
        )
    wanted_error_sets = args.error_sets or ["val"]
    # A start logged before train.py logged per-image errors has none: the guard cannot apply.
    error_sets = [name for name in wanted_error_sets if f"{name}_error_each" in start]
    missing = sorted(set(wanted_error_sets) - set(error_sets))
    if args.error_sets and missing:
        raise SystemExit(f"--error-set names sets without per-image errors at the start: {missing}")
    for record in validations:
        if set_names(record) != names:
            raise SystemExit(
                f"step {record['step']} scores the sets {set_names(record)}, the start {names}: "
                "their means cannot be compared (was the start logged with other validation sets?)"
            )

    header = [
        "step",
        *names,
        *([photo_label(args.photo_measure)] if photos else []),
        "mean",
        "verdict",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    best = None
    # The run's own step 0 is its start, unless the start comes from another log.
    candidates = [record for record in validations if args.start_log or record["step"] != 0]
    for record in [start, *candidates]:
        is_start = record is start
        reasons = (
            []
            if is_start
            else refusals(
                record, start, floors, args.photo_tolerance, error_sets, args.error_tolerance, args.photo_measure
            )
        )
        if not (is_start or reasons) and (best is None or mean_psnr(record) > mean_psnr(best)):
            best = record
        verdict = "start" if is_start else "; ".join(reasons) or "qualifies"
        cells = [
            f"{record['step']} (start)" if is_start else str(record["step"]),
            *(f"{record[f'{name}_psnr']:.2f}" for name in names),
            *([f"{record[photo_key]:.2f}" if photo_key in record else "-"] if photos else []),
            f"{mean_psnr(record):.2f}",
            verdict,
        ]
        print("| " + " | ".join(cells) + " |")
    if not error_sets:
        print(
            f"\nno per-image errors at the start for {', '.join(wanted_error_sets)} "
            "(a train.py older than the guard?): brightness not checked"
        )
    if best is None:
        print("\npick: none qualifies; the starting weights stay")
    else:
        weights = args.run / f"ema_step{best['step']:06d}.safetensors"
        print(f"\npick: step {best['step']} ({weights})")


if __name__ == "__main__":
    main()
