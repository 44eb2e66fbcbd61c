"""What a model needs on a microcontroller, and TFLite Micro itself.

- `tflite_file`: reading `.tflite` files through the generated schema, with bounds checks;
- `operators`: per TFLite Micro kernel, its arena allocations and its ops;
- `planner`: the replica of TFLite Micro's arena (greedy memory plan and persistent tail);
- `keras_graph`: the TFLite graph the converter makes from a plain Keras model;
- `estimate`: `Estimate`, `estimate_tflite`, `estimate_keras`;
- `tflm`: the real interpreter (PyPI `tflite-micro`): measured arena, runs, host latency.

None of them imports TensorFlow, except `keras_graph` (tf_keras) when a Keras model is given.
"""
