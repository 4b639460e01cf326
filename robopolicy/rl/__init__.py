"""RL refinement of trained policies inside a world model (``robopolicy-refine``).

* ``collect``: imagined episodes of a policy, batched in a world model's vector env through the
  evaluator's loop, recorded step by step (``collect_imagined`` -> ``Rollouts``).
* ``returns``: returns-to-go from the model's success / reward heads, advantages, AWR and filtered
  weights.
* ``transitions``: imagined steps as training batches in the dataset's format (any family's
  ``loss(batch)`` trains on them).
* ``refine``: collect -> update -> evaluate in the model -> checkpoint, the best iteration kept;
  methods ``awr`` / ``filtered`` (every family) and ``dppo`` (Diffusion Policy, ``dppo.py``).

Nothing here lives inside a policy class: the methods only call ``loss``, ``act`` and (DPPO) the
Diffusion Policy's public pieces (encoder condition, UNet, sampler plan).
"""
