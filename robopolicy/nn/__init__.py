"""The one copy of each network block every policy family builds from."""

from robopolicy.nn.embeddings import TimestepEmbedding, sinusoidal_embedding
from robopolicy.nn.resnet import ResNet18GN
from robopolicy.nn.spatial_softmax import SpatialSoftmax
from robopolicy.nn.transformer import TransformerBlock, TransformerEncoder, attention_mask
from robopolicy.nn.unet1d import ConditionalUnet1D

__all__ = [
    "ConditionalUnet1D",
    "ResNet18GN",
    "SpatialSoftmax",
    "TimestepEmbedding",
    "TransformerBlock",
    "TransformerEncoder",
    "attention_mask",
    "sinusoidal_embedding",
]
