"""The model layer: no Flask and no HTTP. Device choice (`device`), decoding uploads (`decode`),
loading and checking an export (`loading`, `integrity`, `reload`), batching (`batcher`),
prediction (`predictor`, `service`) and explanations (`explain`); its errors are in `errors`.

Nothing heavy is imported here, so that importing one module (the stdlib-only batcher, say)
costs only that module.
"""

import warnings

# fastai 2.8's layers call torch.jit.script at import time, which torch 2.14 deprecates: a
# notice for fastai's authors that the server would print on every start. Set here, before any
# module of this package imports fastai (`warnings` is loaded with the interpreter anyway).
warnings.filterwarnings(
    "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
)
