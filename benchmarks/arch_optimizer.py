"""Which architecture optimizer settings make the search decide? Measured on a task's data.

Runs the search stage of `python -m mnas.train` (the supernet trained with the
`ResourceRegularizer`, then derivation) once per setting, from a flagfile (the KWS demo's by
default), and prints per setting: the smallest top-choice probability over decisions at the
end (near 1: decided), the derived widths, whether derivation had to repair the argmax, the
exact costs against the targets, the supernet's last validation accuracy, and the seconds.

    python benchmarks/arch_optimizer.py [--flagfile experiments/kws_demo.flags]
        [--settings shared,adam:0.001,adam:0.01,adam:0.03,adam:0.01:split0.2,adam:0.01:gumbel]

A setting is `shared` (the weights' optimizer trains the logits) or `adam:<learning rate>`,
optionally followed by `:split<share>` (first-order bilevel on held-out training data) and
`:gumbel`.
"""

import mnas  # noqa: F401, I001
import csv
import dataclasses
import json
import os
import sys
import tempfile
import time

import tf_keras as keras
from absl import app, flags

from mnas import job, runconfig
from mnas import train as train_command


def parse_setting(text):
    """`job.Config` fields of one setting."""
    parts = text.split(":")
    fields = {"arch_optimizer": parts[0]}
    if parts[0] == "adam":
        fields["arch_learning_rate"] = float(parts[1])
        parts = parts[2:]
    else:
        parts = parts[1:]
    for part in parts:
        if part.startswith("split"):
            fields["arch_split"] = float(part[len("split"):])
        elif part == "gumbel":
            fields["gumbel"] = True
        else:
            raise ValueError(f"Invalid setting {text!r}: unknown part {part!r}.")
    return fields


def main(argv):
    del argv
    values = flags.FLAGS
    base = train_command.config_from_flags(values)
    print(f"{'setting':28s} {'min top p':>9s} {'repaired':>8s} {'val acc':>7s} {'s':>5s}  "
          "widths; exact costs / targets")
    for text in values.settings:
        with tempfile.TemporaryDirectory() as out:
            config = dataclasses.replace(base, out_dir=out, verbose=0, **parse_setting(text))
            run = job._Run(config, runconfig.check(config))  # noqa: SLF001
            keras.utils.set_random_seed(config.seed)
            started = time.time()
            run.search()
            seconds = time.time() - started
            with open(os.path.join(out, "search", "search.json")) as f:
                search = json.load(f)
            with open(os.path.join(out, "search", "history.csv")) as f:
                history = list(csv.DictReader(f))
            spec = json.load(open(os.path.join(out, "arch.json")))
        widths = [e.get("filters", e.get("units")) for e in spec["layers"]
                  if e["type"] in ("conv", "ds", "ib", "dense")]
        costs = ", ".join(f"{k} {v:,.0f}" for k, v in search["exact_costs"].items()
                          if k in ("sram", "flash", "latency"))
        print(f"{text:28s} {search['min_top_probability']:9.3f} {search['changes']:8d} "
              f"{float(history[-1]['val_accuracy']):7.4f} {seconds:5.0f}  {widths}; {costs}",
              flush=True)


if __name__ == "__main__":
    train_command.define_flags()
    flags.DEFINE_list("settings", ["shared", "adam:0.001", "adam:0.01", "adam:0.03",
                                   "adam:0.01:split0.2", "adam:0.01:gumbel"],
                      "Settings to compare (see the module's docstring).")
    if not any(a.startswith("--flagfile") for a in sys.argv[1:]):
        sys.argv.append("--flagfile=experiments/kws_demo.flags")
    app.run(main)
