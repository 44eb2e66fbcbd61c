"""Latency models against latencies measured on real boards, leave one model out.

MicroNets (Banbury et al., MLSys 2021) table 4 gives latencies measured on STM32F446RE (S),
STM32F746ZG (M) and STM32F767ZI (L) for models whose layers are known: MicroNet KWS S/M/L and
AD S/M/L (table 5) and DS-CNN S/M/L ("Hello Edge"), all in `mnas.arch`. For each model, each
latency model is fitted to the other models' measurements and predicts the held-out one on
every board it was measured on; the script prints, per board, the mean and worst absolute
percentage error of those predictions.

Models compared:
- per-operator (`mnas.latency.fit_boards`): cycles per multiply-accumulate of conv, depthwise
  and fully connected operators, per element of the others and per operator, shared by the
  boards, with one factor per board; the held-out model is removed from every board.
- throughput: ops / a per-board throughput (MOps/s) fitted to the other models.
- line: a per-board line in ops fitted to the other models (`mnas.latency.LatencyModel`).
- shipped throughput: ops / the constants mnas used before (ds_cnn backbone; derived from the
  same table, so not a held-out test).

17 measurements of 9 models on 3 boards: few points, and every width is a multiple of 4, so
the channel-alignment factor is not tested here (it comes from the paper's single-layer
measurement). `--print_profile` prints the coefficients fitted to all 17 measurements, as
`mnas/devices.json` holds them. Last line: `latency_loo_mape=<mean over all held-out
predictions>`.
"""

import argparse
import json

import numpy as np

# Seconds, MicroNets table 4 (None: not measured on that board).
TABLE4 = {
    "micronet_kws_l": {"STM32F746ZG": 0.610, "STM32F767ZI": 0.596},
    "micronet_kws_m": {"STM32F446RE": 0.426, "STM32F746ZG": 0.187, "STM32F767ZI": 0.181},
    "micronet_kws_s": {"STM32F446RE": 0.250, "STM32F746ZG": 0.109, "STM32F767ZI": 0.108},
    "micronet_ad_l": {"STM32F767ZI": 0.614},
    "micronet_ad_m": {"STM32F746ZG": 0.608, "STM32F767ZI": 0.567},
    "micronet_ad_s": {"STM32F446RE": 0.457, "STM32F746ZG": 0.192, "STM32F767ZI": 0.194},
    "ds_cnn_l": {"STM32F746ZG": 0.515},
    "ds_cnn_m": {"STM32F746ZG": 0.219},
    "ds_cnn_s": {"STM32F746ZG": 0.058},
}
# Mops per inference in table 4.
PAPER_MOPS = {"micronet_kws_l": 129, "micronet_kws_m": 30.6, "micronet_kws_s": 16.4,
              "micronet_ad_l": 129, "micronet_ad_m": 124.7, "micronet_ad_s": 37.5,
              "ds_cnn_l": 107.2, "ds_cnn_m": 37.3, "ds_cnn_s": 7.1}
BOARDS = ("STM32F446RE", "STM32F746ZG", "STM32F767ZI")
CLOCK_MHZ = {"STM32F446RE": 180.0, "STM32F746ZG": 216.0, "STM32F767ZI": 216.0}
REFERENCE = "STM32F746ZG"
# The MOps/s (ds_cnn backbone) mnas shipped before the per-operator model.
SHIPPED_MOPS = {"STM32F446RE": 73.0, "STM32F746ZG": 185.0, "STM32F767ZI": 190.0}


def model_infos():
    import mnas  # noqa: F401  (Keras 2 before TensorFlow)
    from mnas import arch
    from mnas.hardware import keras_graph

    return {name: keras_graph.keras_model_info(arch.build(arch.get_architecture(name)))[0]
            for name in TABLE4}


def per_operator(infos, train):
    from mnas import latency

    data = {}
    for board in BOARDS:
        names = [n for n in train if board in TABLE4[n]]
        if names:
            data[board] = (CLOCK_MHZ[board], [infos[n] for n in names],
                           [TABLE4[n][board] * 1e3 for n in names])
    models = latency.fit_boards(data, REFERENCE)
    return lambda name, board: models[board].predict_ms(infos[name])


def throughput(ops, train):
    rates = {}
    for board in BOARDS:
        names = [n for n in train if board in TABLE4[n]]
        # ms = ops / (rate * 1e3), fitted in relative error: 1/rate = mean(ms * 1e3 / ops).
        rates[board] = 1.0 / np.mean([TABLE4[n][board] * 1e6 / ops[n] for n in names])
    return lambda name, board: ops[name] / (rates[board] * 1e3)


def line(ops, train):
    from mnas import latency

    fits = {}
    for board in BOARDS:
        names = [n for n in train if board in TABLE4[n]]
        fits[board] = latency.LatencyModel.fit([ops[n] for n in names],
                                               [TABLE4[n][board] * 1e3 for n in names])
    return lambda name, board: fits[board].predict(ops[name])


def shipped(ops, train):
    del train
    return lambda name, board: ops[name] / (SHIPPED_MOPS[board] * 1e3)


def leave_one_out(make):
    errors = {board: [] for board in BOARDS}
    for held in TABLE4:
        predict = make([n for n in TABLE4 if n != held])
        for board, seconds in TABLE4[held].items():
            ms = seconds * 1e3
            errors[board].append((held, 100.0 * abs(predict(held, board) - ms) / ms))
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--print_profile", action="store_true",
                        help="Print the coefficients fitted to all measurements.")
    args = parser.parse_args()
    from mnas.hardware import estimate

    infos = model_infos()
    ops = {n: estimate.estimate_model_info(info).ops for n, info in infos.items()}
    print(f"{len(TABLE4)} models, {sum(len(v) for v in TABLE4.values())} measurements "
          f"(MicroNets table 4); MOps here vs the paper's: " + ", ".join(
              f"{n} {ops[n] / 1e6:.1f} vs {PAPER_MOPS[n]}" for n in TABLE4))
    results = {
        "per-operator": leave_one_out(lambda train: per_operator(infos, train)),
        "throughput": leave_one_out(lambda train: throughput(ops, train)),
        "line": leave_one_out(lambda train: line(ops, train)),
        "shipped throughput (not held out)": leave_one_out(lambda train: shipped(ops, train)),
    }
    print(f"{'model':<34} {'board':<12} {'points':>6} {'mean abs %':>10} {'worst abs %':>11}"
          f"  worst model")
    for label, errors in results.items():
        for board in BOARDS:
            values = [e for _, e in errors[board]]
            worst = max(errors[board], key=lambda item: item[1])
            print(f"{label:<34} {board:<12} {len(values):>6} {np.mean(values):>10.1f} "
                  f"{max(values):>11.1f}  {worst[0]}")
        every = [e for board in BOARDS for _, e in errors[board]]
        print(f"{label:<34} {'all':<12} {len(every):>6} {np.mean(every):>10.1f} "
              f"{max(every):>11.1f}")
    if args.print_profile:
        from mnas import latency

        data = {b: (CLOCK_MHZ[b], [infos[n] for n in TABLE4 if b in TABLE4[n]],
                    [TABLE4[n][b] * 1e3 for n in TABLE4 if b in TABLE4[n]]) for b in BOARDS}
        models = latency.fit_boards(data, REFERENCE)
        print(json.dumps({b: m.to_json() for b, m in models.items()}, indent=1))
    every = [e for board in BOARDS for _, e in results["per-operator"][board]]
    print(f"latency_loo_mape={np.mean(every):.2f}")


if __name__ == "__main__":
    main()
