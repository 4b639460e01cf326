"""The shared observation encoder (cameras, state, instruction) and its parts."""

from robopolicy.encoders.config import EncoderConfig
from robopolicy.encoders.image import CameraEncoder, crop_images
from robopolicy.encoders.language import LANGUAGE_DIM, embed_instructions
from robopolicy.encoders.observation import ObservationEncoder, Tokens

__all__ = [
    "LANGUAGE_DIM",
    "CameraEncoder",
    "EncoderConfig",
    "ObservationEncoder",
    "Tokens",
    "crop_images",
    "embed_instructions",
]
