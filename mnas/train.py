"""The main job: search, derive, train, quantize, convert, verify in TFLite Micro, report.

Usage:

    python -m mnas.train --flagfile=experiments/kws_demo.flags
    python -m mnas.train --flagfile=experiments/kws_s.flags --data_dir=/data/speech_commands_v2
    python -m mnas.train --task=kws --arch=micronet_kws_s --out_dir=runs/kws_s

Flags on the command line override those of the flagfile. The resolved flags are written to
`<out_dir>/flags.txt` (a flagfile that reproduces the run). Started again with the same flags,
an interrupted run resumes from its last finished stage and epoch.

`--restart` discards the output directory's previous run instead of resuming it.

Errors (an unknown task, device or architecture, a bad budget, a missing dataset, an
unwritable output directory, an output directory in use by another run, a damaged run file, a
full disk) are reported as one line on standard error, with exit code 1.
"""

import dataclasses
import functools
import os
import sys
import typing

from absl import app, flags, logging

from mnas import console, errors, runconfig, tasks

# Help text of every flag; the flags are the fields of `runconfig.Config`, with its defaults.
HELP = {
    "task": "Use case: keyword spotting, visual wake words, anomaly detection, or a task "
            "registered in `mnas.tasks`.",
    "data_dir": "Dataset folder (real or embedded). Defaults to data/embedded/<task>.",
    "out_dir": "Output directory. Defaults to runs/<task>.",
    "device": "Target device: STM32F446RE, STM32F746ZG, STM32F767ZI (or S, M, L), or a JSON "
              "profile path.",
    "sram_bytes": "SRAM of the target in bytes (the tensor arena gets it minus the device's "
                  "reserve). Defaults to the device's.",
    "flash_bytes": "Flash of the target in bytes (the model gets it minus the device's "
                   "reserve). Defaults to the device's.",
    "latency_ms": "Latency budget in ms on the device. Defaults to none.",
    "arch": "Skip the search: train this architecture (a name such as micronet_kws_s, or an "
            "arch.json path).",
    "max_width": "Widest channel choice of the search space. Defaults to the space's.",
    "num_blocks": "Blocks of the search space. Defaults to the space's.",
    "stem_stride": "KWS: stride of the stem conv (2 is DS-CNN's; the blocks then keep the "
                   "resolution).",
    "width_steps": "Width choices per layer (10%, 20%, ... of the widest).",
    "image_size": "VWW: side of the square input.",
    "grayscale": "VWW: one channel instead of RGB.",
    "machine": "AD: the machine-type folder when the data folder holds several (e.g. slider).",
    "search": "Search: differentiable (the supernet), or keras-tuner's random search or "
              "Bayesian optimisation over the same choices, training each candidate briefly.",
    "search_trials": "Random/Bayesian: trained trials at most (candidates over the budget are "
                     "rejected untrained); 0 for no limit.",
    "search_seconds": "Random/Bayesian: wall-clock seconds of trials after which no trial "
                      "starts. Defaults to none.",
    "trial_epochs": "Random/Bayesian: training epochs per trial.",
    "search_epochs": "Epochs of the search.",
    "warmup_epochs": "First search epochs that train weights only, architecture frozen.",
    "search_learning_rate": "Initial learning rate of the search (cosine decay).",
    "temperature_start": "Softmax temperature of the architecture logits when the search "
                         "starts.",
    "temperature_end": "... and when it ends.",
    "gumbel": "Gumbel-softmax: sample the architecture mixture with Gumbel noise at every "
              "training step.",
    "arch_optimizer": "Optimizer of the architecture logits: their own Adam, or the weights' "
                      "optimizer.",
    "arch_learning_rate": "Learning rate of the architecture's own Adam.",
    "arch_split": "Share of the training data held out to update the architecture "
                  "(first-order bilevel); 0 updates it on the training batches.",
    "fill_budget": "After the search, widen the derived architecture until the budget is "
                   "full, instead of keeping the search's answer.",
    "straight_through": "Penalise the costs of the argmax architecture (gradients through the "
                        "probabilities) instead of the costs of the expected widths.",
    "aim_latency": "Aim the search at the latency budget (a two-sided penalty: slower and "
                   "faster both cost) instead of only keeping it under.",
    "entropy_weight": "Weight of the decisions' mean normalised entropy in the search's loss: "
                      "decisions the accuracy is indifferent to then commit to one option.",
    "option_costs": "Penalise each option by the costs of the argmax architecture with that "
                    "option chosen, not the argmax's costs alone: an option over the budget "
                    "keeps being pushed down while the argmax fits.",
    "commit_decisions": "Decide greedily over the search's second half: each epoch's end fixes "
                        "the most certain open decisions to their most probable option that "
                        "keeps the budget reachable, until every decision is made.",
    "standardize_features": "KWS: standardise each MFCC coefficient with the training data's "
                            "statistics (written to features.json), so that the int8 input "
                            "resolves them alike.",
    "train_epochs": "Epochs of the final training of the derived architecture.",
    "learning_rate": "Initial learning rate of the final training (cosine decay).",
    "final_learning_rate": "Learning rate at the end of the cosine decays.",
    "weight_decay": "Decoupled weight decay (AdamW) of the weights; 0 uses Adam.",
    "batch_size": "Batch size.",
    "augment": "Training augmentation (KWS: noise, shift, SpecAugment; VWW: flips, crops; AD: "
               "mixup).",
    "mixup": "AD: mixup alpha (MicroNets: 0.3); 0 is off.",
    "quantization": "Quantization-aware training (tfmot) or post-training quantization.",
    "qat_epochs": "Epochs of quantization-aware fine-tuning.",
    "qat_learning_rate": "Learning rate of the quantization-aware fine-tuning.",
    "calibration_samples": "Training samples that calibrate the int8 ranges.",
    "seed": "Seed of data order, augmentation and weights.",
    "verbose": "0: stage lines only; 1: progress too.",
    "cache_dir": "Folder of the feature cache. Defaults to $MNAS_CACHE_DIR, else "
                 "~/.cache/mnas (never inside the dataset).",
    "max_per_class": "Keep at most this many examples of each class (AD: clips per machine "
                     "ID), for a quick run on a subset.",
    "strategy": "tf.distribute strategy of search and training: one device, all local GPUs, "
                "or the workers that TF_CONFIG names (global batch split across replicas).",
}
_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}


def define_flags():
    """Defines the command's flags (not at import, so that importing this module is free):
    one per `runconfig.Config` field, with its default and its `HELP` text."""
    defaults = runconfig.Config(task="kws", data_dir="", out_dir="")
    choices = {"task": tasks.NAMES, "search": runconfig.SEARCHES,
               "arch_optimizer": runconfig.ARCH_OPTIMIZERS,
               "quantization": runconfig.QUANTIZATION, "strategy": runconfig.STRATEGIES}
    types = typing.get_type_hints(runconfig.Config)
    for field in dataclasses.fields(runconfig.Config):
        name = field.name
        default = None if name in ("task", "data_dir", "out_dir") else getattr(defaults, name)
        if name in choices:
            flags.DEFINE_enum(name, default, choices[name], HELP[name])
        else:
            kind = next(t for t in typing.get_args(types[name]) or (types[name],)
                        if t is not type(None))
            _DEFINE[kind](name, default, HELP[name])
    flags.DEFINE_bool("restart", False, "Discard the output directory's previous run (state, "
                      "checkpoints, outputs) and start over, instead of resuming it.")

    for name in runconfig.CHECKED:
        flags.register_validator(name, functools.partial(_valid, name))
    flags.register_validator("arch_split", lambda v: 0 <= v < 1,
                             message="--arch_split must be a fraction in [0, 1).")
    flags.mark_flag_as_required("task")


def _valid(name, value):
    """A flag validator from the job's own check, so that its message is the job's."""
    try:
        runconfig.check_setting(name, value)
    except errors.MnasError as e:
        raise flags.ValidationError(str(e)) from None
    return True


def _parse_flags(argv):
    """Parses the command line; a bad flag is one error line and exit code 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def config_from_flags(values):
    """A `Config` from parsed flags, with the defaults that depend on the task."""

    fields = {name: getattr(values, name) for name in runconfig.Config.__dataclass_fields__}
    fields["data_dir"] = values.data_dir or os.path.join("data", "embedded", values.task)
    fields["out_dir"] = values.out_dir or os.path.join("runs", values.task)
    return runconfig.Config(**fields)


def _flagfile(values):
    """The resolved flags, as a flagfile that reproduces the run."""
    module_flags = values.get_key_flags_for_module(sys.modules[__name__])
    return "".join(flag.serialize() + "\n" for flag in module_flags
                   if flag.value is not None and flag.name != "restart")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would bury the progress.
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; every setting is a --flag.",
              file=sys.stderr)
        return 1
    from mnas import job

    values = flags.FLAGS
    config = config_from_flags(values)
    try:
        report = job.run(config, _flagfile(values), restart=values.restart)
    except (errors.MnasError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command again to resume from {config.out_dir}",
              file=sys.stderr)
        return 130
    acc = report["accuracy"]
    print(f"\n{report['task']} on {report['device']}: "
          f"{'fits' if report['fits'] else 'does NOT fit'}; arena "
          f"{report['measured']['arena_bytes']:,} bytes, model "
          f"{report['measured']['tflite_bytes']:,} bytes; {acc['metric']} float "
          f"{acc['float']:.4f}, int8 {acc['int8']:.4f}. Outputs in {config.out_dir}")
    return 0


def run(define=None, entry=None):
    """The `python -m mnas.train` command (or another with its own `define` and `entry`)."""
    console.own_lines_only()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    (define or define_flags)()
    app.run(entry or main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
