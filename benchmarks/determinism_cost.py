"""What deterministic ops cost: time per KWS search step with and without
`tf.config.experimental.enable_op_determinism()` (which `mnas.train` turns on).

The step is the one of `benchmarks/search_overhead.py`: the MicroNets KWS supernet (49x10x1,
9 depthwise-separable blocks of up to 276 channels) with the ResourceRegularizer, batch 100,
random data, CPU. Determinism is a per-process switch, so each setting runs in its own process;
the two alternate `--repeats` times and the lowest median of each is kept.

    python benchmarks/determinism_cost.py [--steps 20] [--repeats 2]

Prints both step times and, last, `determinism_slowdown=<ratio>`.
"""

import argparse
import subprocess
import sys


def child(deterministic, steps, batch):
    import numpy as np

    import mnas
    from mnas import reproducible

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from search_overhead import step_time

    import tf_keras as keras

    if deterministic:
        reproducible.make_deterministic()

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * batch, 49, 10, 1)).astype("float32")
    y = rng.integers(0, 12, size=len(x))
    supernet = mnas.search_spaces.get("kws").build()
    seconds = step_time(supernet, x, y, batch, [mnas.ResourceRegularizer(device="STM32F746ZG")])
    print(f"{seconds:.6f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["on", "off"])
    args = parser.parse_args()
    if args.child:
        child(args.child == "on", args.steps, args.batch)
        return
    times = {"off": [], "on": []}
    for _ in range(args.repeats):
        for setting in ("off", "on"):
            out = subprocess.run([sys.executable, __file__, f"--child={setting}",
                                  f"--steps={args.steps}", f"--batch={args.batch}"],
                                 capture_output=True, text=True, check=True)
            times[setting].append(float(out.stdout.strip().splitlines()[-1]))
    off, on = min(times["off"]), min(times["on"])
    print(f"KWS search step, default ops: {off * 1e3:.0f} ms "
          f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in times['off'])})")
    print(f"KWS search step, deterministic ops: {on * 1e3:.0f} ms "
          f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in times['on'])})")
    print(f"determinism_slowdown={on / off:.3f}")


if __name__ == "__main__":
    main()
