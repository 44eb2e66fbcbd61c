"""Command line that writes the embedded synthetic datasets (what `make data` runs).

Usage:
    python -m mnas.datasets.generate [--out DIR] [--seed N] [--tasks kws,ad,vww] [--workers N]
        [--scale X]
"""

from absl import app, flags

from mnas.datasets.embedded import TASKS, generate_embedded


def define_flags(flag_values=flags.FLAGS):
    """Defines the command's flags on `flag_values`."""
    flags.DEFINE_string("out", "data/embedded", "Folder to write the datasets into.",
                        flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the generation.", flag_values=flag_values)
    flags.DEFINE_list("tasks", list(TASKS), "Tasks to generate, among kws, ad, vww.",
                      flag_values=flag_values)
    flags.DEFINE_integer("workers", 2, "Processes for speech synthesis.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_float("scale", 1.0, "Multiplies the number of examples (below 1: a quick, "
                       "smaller set).", lower_bound=0.001, flag_values=flag_values)
    flags.register_validator("tasks", lambda v: bool(v) and set(v) <= set(TASKS),
                             message=f"--tasks must list names among {', '.join(TASKS)}.",
                             flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
    values = flags.FLAGS
    generate_embedded(values.out, seed=values.seed, tasks=values.tasks, scale=values.scale,
                      workers=values.workers)


if __name__ == "__main__":
    define_flags()
    app.run(main)
