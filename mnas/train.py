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

import functools
import os
import sys

from absl import app, flags, logging

from mnas import console, errors, runconfig

def define_flags():
    """Defines the command's flags (not at import, so that importing this module is free)."""
    defaults = runconfig.Config(task="kws", data_dir="", out_dir="")
    flags.DEFINE_enum("task", None, runconfig.TASKS, "Use case: keyword spotting, visual wake "
                      "words or anomaly detection.")
    flags.DEFINE_string("data_dir", None, "Dataset folder (real or embedded). Defaults to "
                        "data/embedded/<task>.")
    flags.DEFINE_string("out_dir", None, "Output directory. Defaults to runs/<task>.")
    flags.DEFINE_string("device", defaults.device, "Target device: STM32F446RE, STM32F746ZG, "
                        "STM32F767ZI (or S, M, L), or a JSON profile path.")
    flags.DEFINE_integer("sram_bytes", None, "SRAM of the target in bytes (the tensor arena "
                         "gets it minus the device's reserve). Defaults to the device's.")
    flags.DEFINE_integer("flash_bytes", None, "Flash of the target in bytes (the model gets it "
                         "minus the device's reserve). Defaults to the device's.")
    flags.DEFINE_float("latency_ms", None, "Latency budget in ms on the device. Defaults to "
                       "none.")
    flags.DEFINE_string("arch", None, "Skip the search: train this architecture (a name such "
                        "as micronet_kws_s, or an arch.json path).")
    flags.DEFINE_integer("max_width", None, "Widest channel choice of the search space. "
                         "Defaults to the space's.")
    flags.DEFINE_integer("num_blocks", None, "Blocks of the search space. Defaults to the "
                         "space's.")
    flags.DEFINE_integer("stem_stride", defaults.stem_stride, "KWS: stride of the stem conv "
                         "(2 is DS-CNN's; the blocks then keep the resolution).")
    flags.DEFINE_integer("width_steps", defaults.width_steps, "Width choices per layer (10%, "
                         "20%, ... of the widest).")
    flags.DEFINE_integer("image_size", defaults.image_size, "VWW: side of the square input.")
    flags.DEFINE_bool("grayscale", defaults.grayscale, "VWW: one channel instead of RGB.")
    flags.DEFINE_string("machine", None, "AD: the machine-type folder when the data folder "
                        "holds several (e.g. slider).")
    flags.DEFINE_enum("search", defaults.search, runconfig.SEARCHES, "Search: differentiable (the "
                      "supernet), or keras-tuner's random search or Bayesian optimisation "
                      "over the same choices, training each candidate briefly.")
    flags.DEFINE_integer("search_trials", defaults.search_trials, "Random/Bayesian: trained "
                         "trials at most (candidates over the budget are rejected untrained); "
                         "0 for no limit.")
    flags.DEFINE_float("search_seconds", None, "Random/Bayesian: wall-clock seconds of trials "
                       "after which no trial starts. Defaults to none.")
    flags.DEFINE_integer("trial_epochs", defaults.trial_epochs, "Random/Bayesian: training "
                         "epochs per trial.")
    flags.DEFINE_integer("search_epochs", defaults.search_epochs, "Epochs of the search.")
    flags.DEFINE_integer("warmup_epochs", defaults.warmup_epochs, "First search epochs that "
                         "train weights only, architecture frozen.")
    flags.DEFINE_float("search_learning_rate", defaults.search_learning_rate, "Initial "
                       "learning rate of the search (cosine decay).")
    flags.DEFINE_float("temperature_start", defaults.temperature_start, "Softmax temperature "
                       "of the architecture logits when the search starts.")
    flags.DEFINE_float("temperature_end", defaults.temperature_end, "... and when it ends.")
    flags.DEFINE_bool("gumbel", defaults.gumbel, "Gumbel-softmax: sample the architecture "
                      "mixture with Gumbel noise at every training step.")
    flags.DEFINE_enum("arch_optimizer", defaults.arch_optimizer, runconfig.ARCH_OPTIMIZERS,
                      "Optimizer of the architecture logits: their own Adam, or the weights' "
                      "optimizer.")
    flags.DEFINE_float("arch_learning_rate", defaults.arch_learning_rate, "Learning rate of "
                       "the architecture's own Adam.")
    flags.DEFINE_float("arch_split", defaults.arch_split, "Share of the training data held "
                       "out to update the architecture (first-order bilevel); 0 updates it "
                       "on the training batches.")
    flags.DEFINE_bool("straight_through", defaults.straight_through, "Penalise the costs of "
                      "the argmax architecture (gradients through the probabilities) instead "
                      "of the costs of the expected widths.")
    flags.DEFINE_bool("aim_latency", defaults.aim_latency, "Aim the search at the latency "
                      "budget (a two-sided penalty: slower and faster both cost) instead of "
                      "only keeping it under.")
    flags.DEFINE_bool("fill_budget", defaults.fill_budget, "After the search, widen the "
                      "derived architecture until the budget is full, instead of keeping the "
                      "search's answer.")
    flags.DEFINE_integer("train_epochs", defaults.train_epochs, "Epochs of the final "
                         "training of the derived architecture.")
    flags.DEFINE_float("learning_rate", defaults.learning_rate, "Initial learning rate of the "
                       "final training (cosine decay).")
    flags.DEFINE_float("final_learning_rate", defaults.final_learning_rate, "Learning rate "
                       "at the end of the cosine decays.")
    flags.DEFINE_float("weight_decay", defaults.weight_decay, "Decoupled weight decay (AdamW) "
                       "of the weights; 0 uses Adam.")
    flags.DEFINE_integer("batch_size", defaults.batch_size, "Batch size.")
    flags.DEFINE_bool("standardize_features", defaults.standardize_features, "KWS: "
                      "standardise each MFCC coefficient with the training data's statistics "
                      "(written to features.json), so that the int8 input resolves them alike.")
    flags.DEFINE_bool("augment", defaults.augment, "Training augmentation (KWS: noise, shift, "
                      "SpecAugment; VWW: flips, crops; AD: mixup).")
    flags.DEFINE_float("mixup", defaults.mixup, "AD: mixup alpha (MicroNets: 0.3); 0 is off.")
    flags.DEFINE_enum("quantization", defaults.quantization, runconfig.QUANTIZATION,
                      "Quantization-aware training (tfmot) or post-training quantization.")
    flags.DEFINE_integer("qat_epochs", defaults.qat_epochs, "Epochs of quantization-aware "
                         "fine-tuning.")
    flags.DEFINE_float("qat_learning_rate", defaults.qat_learning_rate, "Learning rate of the "
                       "quantization-aware fine-tuning.")
    flags.DEFINE_integer("calibration_samples", defaults.calibration_samples, "Training "
                         "samples that calibrate the int8 ranges.")
    flags.DEFINE_integer("seed", defaults.seed, "Seed of data order, augmentation and weights.")
    flags.DEFINE_integer("verbose", defaults.verbose, "0: stage lines only; 1: progress too.")

    flags.DEFINE_string("cache_dir", None, "Folder of the feature cache. Defaults to "
                        "$MNAS_CACHE_DIR, else ~/.cache/mnas (never inside the dataset).")
    flags.DEFINE_integer("max_per_class", None, "Keep at most this many examples of each "
                         "class (AD: clips per machine ID), for a quick run on a subset.")
    flags.DEFINE_enum("strategy", defaults.strategy, ("default", "mirrored", "multi_worker"),
                      "tf.distribute strategy of search and training: one device, all local "
                      "GPUs, or the workers that TF_CONFIG names (global batch split across "
                      "replicas).")
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
