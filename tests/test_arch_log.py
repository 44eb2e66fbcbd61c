import json

import pytest
import tensorflow as tf

import mnas
from mnas import arch_log
from test_callbacks import space, task


def test_architecture_logger_writes_one_record_per_epoch(rng, tmp_path):
    x, y = task(rng, 64)
    model = space().build()
    model.compile("adam", "sparse_categorical_crossentropy")
    path = tmp_path / "arch.jsonl"
    model.fit(x, y, epochs=2, verbose=0, callbacks=[arch_log.ArchitectureLogger(str(path))])
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert set(records[0]["probabilities"]) == {"stem", "skip0", "ds0", "skip1", "ds1"}
    assert sum(records[1]["probabilities"]["stem"]) == pytest.approx(1.0)
    assert records[0]["options"]["skip0"] == ["skip", "keep"]
    stem = {layer.name: layer for layer in mnas.searchable_layers(model)}["stem"]
    assert records[0]["options"]["stem"] == list(stem.choices)


def test_architecture_logger_writes_probabilities_per_decision_to_tensorboard(rng, tmp_path):
    x, y = task(rng, 64)
    model = space().build()
    model.compile("adam", "sparse_categorical_crossentropy")
    logger = arch_log.ArchitectureLogger(log_dir=str(tmp_path / "tb"))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    values = {}
    for event_file in (tmp_path / "tb").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                values[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    widths = {layer.name: layer for layer in mnas.searchable_layers(model)}["stem"].choices
    for epoch, record in enumerate(logger.history):
        stem = [values[(f"architecture_stem/width_{w}", epoch)] for w in widths]
        assert stem == pytest.approx(record["probabilities"]["stem"])
        assert values[("architecture_skip0/keep", epoch)] == pytest.approx(
            record["probabilities"]["skip0"][1])
        assert values[("architecture_ds1/top", epoch)] == pytest.approx(
            max(record["probabilities"]["ds1"]))
