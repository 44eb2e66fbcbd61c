"""tf.distribute strategies for search and training on several devices and machines.

- "default": one device (TensorFlow's default strategy).
- "mirrored": `tf.distribute.MirroredStrategy` over all local GPUs (or the CPU).
- "multi_worker": `tf.distribute.MultiWorkerMirroredStrategy`, configured by the `TF_CONFIG`
  environment variable; every worker runs the same command.

The batch size given to training is the global batch, split across the replicas. The
supernet's architecture logits, the regulariser's strengths and the temperatures are mirrored
variables: the regulariser updates its strengths once per global step from the expected costs,
which every replica computes from the same (mirrored) logits, so they are identical on every
replica.

Example:

>>> strategy = get_strategy("mirrored")       # doctest: +SKIP
>>> with strategy.scope():                    # doctest: +SKIP
...     model = mnas.search_spaces.get("kws").build()
...     model.compile("adam", "sparse_categorical_crossentropy")
"""

import json
import os

from mnas import errors
from mnas.runconfig import STRATEGIES


def worker():
    """(task type, index, number of workers) from `TF_CONFIG`; ("chief", 0, 1) without it."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as error:
        raise errors.MnasError(
            f"Invalid value for `TF_CONFIG`: expected JSON with `cluster` and `task`, received "
            f"text that does not parse ({error}).") from None
    task = config.get("task", {})
    cluster = config.get("cluster", {})
    count = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
    return task.get("type", "chief"), int(task.get("index", 0)), max(1, count)


def is_chief():
    """True for the process that writes the outputs (worker 0 when there is no chief)."""
    task_type, index, _ = worker()
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)


def get_strategy(name):
    """The `tf.distribute.Strategy` called `name` (one of `STRATEGIES`).

    Create it when the program starts, before other TensorFlow work: a multi-worker strategy
    sets up the cluster's communication.

    Raises:
        MnasError: an unknown name, or "multi_worker" without a usable `TF_CONFIG`.
    """
    if name not in STRATEGIES:
        raise errors.MnasError(
            f"Invalid value for `strategy`: expected one of {STRATEGIES}, received {name!r}.")
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    task_type, _, count = worker()
    if not os.environ.get("TF_CONFIG") or count < 1 or task_type not in ("chief", "worker"):
        raise errors.MnasError(
            "Invalid value for `TF_CONFIG`: expected the cluster and this process's task for "
            "`--strategy=multi_worker`, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", "
            "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}; received "
            f"{os.environ.get('TF_CONFIG')!r}.")
    return tf.distribute.MultiWorkerMirroredStrategy()


def shard_by_data(dataset):
    """`dataset` with every worker taking its share of each batch (it reads no files)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
