"""Keep the record of a long training run in the repository, and ship its best weights.

A run folder (``--out`` of ``python -m scratchnn train``) holds checkpoints that do not belong in
git. This script copies what a reader needs to trust and reproduce the run into ``results/``:
``history.json``, the PSNR plot, and ``run.json`` (the exact command, the settings stored in the
checkpoint, the machine, wall and CPU time). With ``--ship`` it also copies the weights of the
best validation epoch into the package, ``scratchnn/pretrained/<network>.pth``, with the JSON
card that ``scratchnn.Model`` and chapter 7 read.

Usage (from the repository root)::

    python tools/record_run.py runs/course-n2n-seed0 results/course/n2n \\
        --command "python -m scratchnn train ..." [--ship]

A network shipped before the standard benchmark existed gets its standard-set PSNRs added to
its card (nothing else in the card changes)::

    python tools/record_run.py --update-card unet --standard-results results/standard_sets.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def cpu_name():
    """The processor's model name, as /proc/cpuinfo gives it (Linux), else platform's guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine(threads):
    """Where the run ran: CPU or GPU, cores, threads, versions."""
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": threads,
            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def summary(run_dir, command, threads, note=None):
    """run.json: the command, the checkpoint's settings, the best epoch and the times (and a
    note on how the run went, kept apart from the command so that the command stays runnable)."""
    checkpoint = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    history = checkpoint["history"]
    best = history["best_epoch"]
    at_best = history["epoch"].index(best)
    return {
        "command": command,
        "config": checkpoint["config"],
        "epochs_done": checkpoint["epoch"],
        "best_epoch": best,
        "best_val_psnr_db": history["val_psnr"][at_best],
        "other_val_psnr_db_at_best": {name: values[at_best]
                                      for name, values in history["other_val_psnr"].items()},
        "noisy_input_psnr_db": history["baseline_psnr"],
        "wall_seconds": round(sum(history["seconds"]), 1),
        "cpu_seconds": round(sum(history["cpu_seconds"]), 1),
        "machine": machine(threads),
        "date": datetime.date.today().isoformat(),
    } | ({"note": note} if note else {})


NETWORK_OPTIONS = ("depth", "upsampling")   # the U-Net's, stored in the run's config


def data_source(config):
    """How the training pairs were made, in one line."""
    if "crop" in config:  # fresh pairs for every step (--data cbsd432 or a folder)
        return (f"{config['data']}: scratchnn.data.FreshPairs, a fresh batch of "
                f"{config['crop']}x{config['crop']} crops and noise for every step, "
                f"noise={config['noise']}, augment={config['augment']}, "
                f"{'clipped uint8' if config['clip'] else 'unclipped float'} noisy images")
    return (f"{config['data']}: scratchnn.data.make_noise2noise_pairs("
            f"{config['num_train']}, seed={config['seed']}, noise={config['noise']}, "
            f"augment={config['augment']}, recolour={config.get('recolour', False)})")


def standard_psnrs(results_file, name):
    """``{set: {sigma: PSNR}}`` of the rows of ``benchmarks/standard_sets.py``'s JSON measured
    for the method ``name``; empty when there are none."""
    if results_file is None or not Path(results_file).exists():
        return {}
    found = {}
    for row in json.loads(Path(results_file).read_text())["rows"]:
        if row["method"] == name:
            found.setdefault(row["set"], {})[f"{row['sigma']:g}"] = round(row["psnr_db"], 3)
    return found


SELECTIONS = {
    "best": "the epoch with the best validation PSNR",
    "last": "the last epoch, where its learning-rate schedule ends (the validation crops, with "
            "the course's clipped noise, do not select it)",
}


def card(record, history, network_file, name=None, standard=None, epoch="best"):
    """The JSON card shipped beside the weights: what, how trained, how good, on what.
    ``epoch`` says which epoch's weights ship: "best" (validation) or "last"."""
    config = record["config"]
    name = name or config["network"]
    shipped_epoch = record["best_epoch"] if epoch == "best" else record["epochs_done"]
    at = history["epoch"].index(shipped_epoch)
    options = {key: config[key] for key in NETWORK_OPTIONS if key in config}
    schedule = {key: config[key] for key in ("lr_schedule", "total_steps", "steps_per_epoch")
                if key in config}
    return {
        "what": f"Weights of the {config['network']} network ({config['channels']} channels"
                + "".join(f", {key} {value}" for key, value in options.items())
                + f"), trained with the from-scratch framework (scratchnn.nn); "
                  f"{SELECTIONS[epoch]}. Loaded by scratchnn.Model(network={name!r})"
                  f".load_pretrained_model().",
        "commands": [record["command"]],
        "then": f"python tools/record_run.py RUN results/... --ship --epoch {epoch}  (copies "
                f"the weights of epoch {shipped_epoch} to scratchnn/pretrained/{network_file})",
        "network": {"kind": config["network"], "channels": config["channels"],
                    "framework": config["framework"]} | ({"options": options} if options else {}),
        "training": {key: config[key] for key in
                     ("optimizer", "lr", "batch_size", "seed", "dtype", "augment")}
        | {"recolour": config.get("recolour", False),      # absent from older records
           "epochs": record["epochs_done"], "best_epoch": record["best_epoch"],
           "shipped_epoch": shipped_epoch} | schedule,
        "data": {"source": data_source(config),
                 "noise": config["noise"], "num_pairs": config["num_train"],
                 "clean_targets": config["clean_targets"],
                 "validation": "photos: make_validation_set(1000, seed=0) (held-out photographs); "
                               "varied: make_validation_set(1000, seed=0, "
                               "photos=VARIED_VALIDATION_PHOTOS) (grey photographs, textures)"},
        "validation_psnr_db": round(history["val_psnr"][at], 3),
        "varied_validation_psnr_db": round(history["other_val_psnr"]["varied"][at], 3),
        "noisy_input_psnr_db": round(record["noisy_input_psnr_db"], 3),
        "varied_noisy_input_psnr_db": round(history["other_baseline_psnr"]["varied"], 3),
        "validation_psnr_per_epoch_db": [round(value, 3) for value in history["val_psnr"]],
        "varied_validation_psnr_per_epoch_db": [round(value, 3) for value in
                                                history["other_val_psnr"]["varied"]],
        "train_loss_per_epoch": history["train_loss"],
        "epoch_seconds": [round(value, 1) for value in history["seconds"]],
        "cpu_seconds": record["cpu_seconds"],
        "wall_seconds": record["wall_seconds"],
        "machine": record["machine"],
        "date": record["date"],
        "shipped_epoch_index": at,
    } | ({"standard_sets_psnr_db": standard} if standard else {})


def update_card(name, results_file, pretrained_dir):
    """Add (or refresh) the standard-set PSNRs of the shipped network ``name`` in its card,
    from ``benchmarks/standard_sets.py``'s rows measured for ``name``; refuse when there are
    none, since a card must not claim a benchmark it did not run."""
    card_file = Path(pretrained_dir) / f"{name}.json"
    if not card_file.exists():
        raise SystemExit(f"no card {card_file}: ship the network first")
    standard = standard_psnrs(results_file, name)
    if not standard:
        raise SystemExit(f"{results_file} has no rows for the method {name!r}; run "
                         f"benchmarks/standard_sets.py --methods {name}=WEIGHTS@SIGMA first")
    card = json.loads(card_file.read_text())
    card["standard_sets_psnr_db"] = standard
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    print(f"{card_file}: standard sets {standard}")
    return standard


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="the run's --out folder")
    parser.add_argument("record_dir", type=Path, nargs="?",
                        help="where in results/ to keep its record")
    parser.add_argument("--command", help="the exact command that made the run")
    parser.add_argument("--update-card", metavar="NAME", default=None,
                        help="only add --standard-results' rows for NAME to the card of the "
                             "shipped network NAME (no run folder needed)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads the run used")
    parser.add_argument("--note", default=None,
                        help="how the run went (interruptions, resumes, a shared machine)")
    parser.add_argument("--ship", action="store_true",
                        help="copy the weights that --epoch chooses into the package's "
                             "pretrained/ folder with their card")
    parser.add_argument("--epoch", choices=sorted(SELECTIONS), default="best",
                        help="which weights ship: the best validation epoch (best.pth) or the "
                             "last one (checkpoint.pt), the end of a learning-rate schedule")
    parser.add_argument("--name", default=None,
                        help="ship under this name (scratchnn/pretrained/NAME.pth; "
                             "Model(network=NAME)). Default: the architecture's name")
    parser.add_argument("--standard-results", type=Path, default=None,
                        help="benchmarks/standard_sets.py's JSON: its rows for --name go into "
                             "the card")
    parser.add_argument("--pretrained-dir", type=Path,
                        default=ROOT / "scratchnn" / "pretrained",
                        help="where shipped weights live. Default: %(default)s")
    args = parser.parse_args(argv)
    if args.update_card:
        update_card(args.update_card, args.standard_results, args.pretrained_dir)
        return
    if args.run_dir is None or args.record_dir is None or args.command is None:
        parser.error("recording a run needs RUN_DIR, RECORD_DIR and --command")

    args.record_dir.mkdir(parents=True, exist_ok=True)
    record = summary(args.run_dir, args.command, args.threads, args.note)
    for name in ("history.json", "psnr.png"):
        shutil.copyfile(args.run_dir / name, args.record_dir / name)
    (args.record_dir / "run.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"recorded {args.run_dir} in {args.record_dir}: best epoch {record['best_epoch']}, "
          f"{record['best_val_psnr_db']:.2f} dB")
    if args.ship:
        network = args.name or record["config"]["network"]
        history = json.loads((args.run_dir / "history.json").read_text())
        shipped = args.pretrained_dir
        shipped.mkdir(parents=True, exist_ok=True)
        if args.epoch == "best":
            shutil.copyfile(args.run_dir / "best.pth", shipped / f"{network}.pth")
        else:
            checkpoint = torch.load(args.run_dir / "checkpoint.pt", map_location="cpu",
                                    weights_only=True)
            torch.save(checkpoint["network"], shipped / f"{network}.pth")
        text = json.dumps(card(record, history, f"{network}.pth", network,
                               standard_psnrs(args.standard_results, network), args.epoch),
                          indent=2) + "\n"
        (shipped / f"{network}.json").write_text(text)
        print(f"shipped {shipped / network}.pth and its card")


if __name__ == "__main__":
    main()
