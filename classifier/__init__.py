"""Model loading, device choice, image decoding, batching and prediction; no Flask here."""

from .device import CudaQuery, DeviceChoice, DeviceError, choose_device
from .images import (
    ImageError,
    ImageTooLargeError,
    UnreadableImageError,
    UnsupportedImageError,
    decode_image,
)
from .loading import ModelLoadError, load_export
from .model import Classifier, Prediction
from .service import ModelService, NoModelError, ServiceSettings, no_model_message

__all__ = [
    "Classifier", "CudaQuery", "DeviceChoice", "DeviceError", "ImageError", "ImageTooLargeError",
    "ModelLoadError", "ModelService", "NoModelError", "Prediction", "ServiceSettings",
    "UnreadableImageError", "UnsupportedImageError", "choose_device", "decode_image",
    "load_export", "no_model_message",
]
