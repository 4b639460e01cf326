"""The one copy of each network block every policy family builds from."""

from robopolicy.nn.dit import AdaLNHead, AdaLNZeroBlock, DiT, patchify, sincos_2d, unpatchify, zero_init_
from robopolicy.nn.embeddings import TimestepEmbedding, sinusoidal_embedding
from robopolicy.nn.resnet import ResNet18GN
from robopolicy.nn.spatial_softmax import SpatialSoftmax
from robopolicy.nn.transformer import TransformerBlock, TransformerEncoder, attention_mask
from robopolicy.nn.unet1d import ConditionalUnet1D

__all__ = [
    "AdaLNHead",
    "AdaLNZeroBlock",
    "ConditionalUnet1D",
    "DiT",
    "ResNet18GN",
    "SpatialSoftmax",
    "TimestepEmbedding",
    "TransformerBlock",
    "TransformerEncoder",
    "attention_mask",
    "patchify",
    "sincos_2d",
    "sinusoidal_embedding",
    "unpatchify",
    "zero_init_",
]
