"""`covidct train lung|classifier`: train a model, write NAME.safetensors + NAME.json."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

HELP = "train the lung segmentation model or the slice classifier on a dataset"
DEFAULTS = {"lung": ("unet_vgg16", 0.125), "classifier": ("resnet18", 0.5)}
NEGATABLE = {"input_antialias"}  # flags whose default is on: recorded when switched off


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for task, (arch, width) in DEFAULTS.items():
        p = sub.add_parser(task, help=f"train the {task} model")
        p.add_argument("--data", type=Path, required=True, help="dataset folder")
        p.add_argument("--layout", default="auto",
                       help="dataset layout (auto, synth, nifti, medseg, covid19-ct-seg, "
                            "mosmed, csv; see covidct.train.layouts)")
        p.add_argument("--out", type=Path, required=True,
                       help="output folder: weights, model card, checkpoint-TASK.pt")
        p.add_argument("--arch", default=arch,
                       help=f"architecture (default {arch}; Gozes et al. 2020 used "
                            f"{'unet_vgg16' if task == 'lung' else 'resnet50'})")
        p.add_argument("--width", type=float, default=width,
                       help=f"channel width multiplier (default {width}; 1.0 = torchvision's)")
        p.add_argument("--name", help="model name (default: TASK-ARCH-wWIDTH)")
        p.add_argument("--epochs", type=int, default=12)
        p.add_argument("--batch-size", type=int, default=16)
        p.add_argument("--lr", type=float, default=2e-3)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--patience", type=int, default=4,
                       help="stop after this many epochs without validation improvement")
        p.add_argument("--steps-per-epoch", type=int, default=None)
        p.add_argument("--val-fraction", type=float, default=0.2,
                       help="share of the cases held out for validation (split by case)")
        p.add_argument("--slices-per-case", type=int, default=48,
                       help="training slices taken per case (evenly spaced)")
        p.add_argument("--resume", action="store_true",
                       help="continue from OUT/checkpoint-TASK.pt, validating on its "
                            "validation cases (cases new to --data train)")
        p.add_argument("--resplit", action="store_true",
                       help="with --resume: split --data afresh instead of keeping the "
                            "checkpoint's validation cases (how v3 was trained)")
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                       help="autocast precision (auto: bf16 where the CPU runs it natively)")
        p.add_argument("--pretrained", type=Path,
                       help="a torchvision ImageNet checkpoint (local file) for the encoder")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--input-antialias", action=argparse.BooleanOptionalAction,
                       default=True,
                       help="the model card tells inference to shrink inputs to 224 with an "
                            "antialiasing filter (default; --no-input-antialias: plain "
                            "bilinear sampling)")
        p.add_argument("--train-antialias", action=argparse.BooleanOptionalAction,
                       default=False,
                       help="shrink the training and validation inputs with the antialiasing "
                            "filter too (default off: plain sampling keeps the scanner noise "
                            "in training, which measured more robust on noisy scans)")
        if task == "lung":
            p.add_argument("--empty-slices", type=float,
                           help="slices without lung added to training, as a share of the "
                                "lung slices taken (teaches the network where lungs end; "
                                "default 0.1)")
        if task == "classifier":
            p.add_argument("--lung-model", type=Path,
                           help="folder with a trained lung model: calibrate the thresholds on "
                                "its masks of the validation cases, as at inference")


def run(args: argparse.Namespace) -> int:
    from covidct.train.loop import TrainConfig, TrainOptions

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, patience=args.patience, device=args.device,
                         dtype=args.dtype, steps_per_epoch=args.steps_per_epoch,
                         progress=not args.no_progress)
    options = TrainOptions(
        data=args.data, out=args.out, arch=args.arch, width=args.width, layout=args.layout,
        name=args.name, val_fraction=args.val_fraction,
        max_slices_per_case=args.slices_per_case, pretrained=args.pretrained,
        resume=args.resume, resplit=args.resplit, command=_command_line(args), config=config,
        lung_model=getattr(args, "lung_model", None), input_antialias=args.input_antialias,
        train_antialias=args.train_antialias,
        **({"empty_slice_share": args.empty_slices}
           if getattr(args, "empty_slices", None) is not None else {}))
    if args.task == "lung":
        from covidct.train.lung_training import train_lung

        spec = train_lung(options)
    else:
        from covidct.train.classifier_training import train_classifier

        spec = train_classifier(options)
    print(f"wrote {args.out / spec.weights_file} (sha256 {spec.sha256[:12]}...)")
    print(f"validation: {spec.metrics}")
    if spec.task == "classifier":
        print(f"thresholds: slice {spec.slice_threshold}, case {spec.case_threshold}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The equivalent command line, for the model card."""
    words = ["covidct", "train", args.task]
    for key, value in vars(args).items():
        if key in NEGATABLE and value is False:  # an --x/--no-x flag switched off
            words.append("--no-" + key.replace("_", "-"))
            continue
        if key in ("run", "command", "task", "verbose") or value in (None, False):
            continue
        words.append("--" + key.replace("_", "-"))
        if value is not True:
            words.append(str(value))
    return shlex.join(words)
