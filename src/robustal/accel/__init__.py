"""How a run executes, and the code that makes it fast: a reader of the method can skip this package.

Everything here changes *how* the numbers are computed, never *what* is computed beyond
floating-point rounding (bf16 excepted, which is a declared numerics change):

- `Execution` (execution.py): the one route of the execution settings (device, precision,
  memory format, compilation, attack view, CUDA graphs), built from a run's config. It prepares
  the model once; inside ``with execution.context():`` forward passes run at its precision and
  attacks run on its attack view, replayed as CUDA graphs where asked.
- folding.py: the attack view, a traced copy of the eval-mode model with BatchNorm folded into
  convolutions (and the fused kernels below swapped in).
- kernels.py: numba kernels of Conv2d -> ReLU -> MaxPool2d(2) blocks (optional extra ``robustal[fast]``).
- cuda_graphs.py: capture and replay of attack loops on GPUs.
- hardware.py: what the CPU or GPU supports, and the settings ``fast`` resolves to there.
"""

from robustal.accel.execution import PRECISIONS, Execution, check_precision, current_execution
from robustal.accel.folding import fold_batchnorm
from robustal.accel.hardware import Hardware, detect_hardware, fast_settings

__all__ = [
    "PRECISIONS",
    "Execution",
    "Hardware",
    "check_precision",
    "current_execution",
    "detect_hardware",
    "fast_settings",
    "fold_batchnorm",
]
