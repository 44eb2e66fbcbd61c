"""What a firmware project needs beside the model: C sources, the 32-bit arena, C features.

- `csources`: `model_data.h` / `model_data.cc` (the array, its quantization, labels, the
  tensor arena size, an op resolver with exactly the model's operators, feature settings);
- `arena32`: TFLite Micro's persistent allocations for a 32-bit microcontroller build;
- `features_c`: the audio feature front end as C (`features.c`, `features.h`).
"""
