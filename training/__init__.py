"""Training pieces behind `train.py`: download, data, learner, reports and the model card."""

import warnings

import matplotlib

# the CLI only ever writes PNG files: Agg needs no display, and it has to be chosen
# before fastai imports pyplot
matplotlib.use("Agg")

# fastai 2.8 decorates a few layers with torch.jit.script at import time, which torch 2.14
# reports as deprecated; the warning says nothing a user of train.py could act on
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
# and fastai.tabular (imported by fastai.interpret) sets a pandas option pandas 3 retired
warnings.filterwarnings("ignore", message=r"The 'mode\.chained_assignment' option is deprecated")
