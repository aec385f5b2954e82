"""The adapter: the one way vinfo reaches the codec library (:mod:`taskcodecs`).

No other vinfo module imports taskcodecs (``tests/test_architecture.py`` enforces it); what
vinfo needs of it is named here, module by module, each imported only when used:

- :mod:`vinfo.adapter.codec` -- a base codec run and a dataset -> (ŷ_b, target) pairs decoded
  from the real bitstreams (:func:`~vinfo.adapter.codec.extract_codec_pairs`);
- :mod:`vinfo.adapter.enhancement` -- a scalable enhancement run and a dataset -> (ŷ_b, ŷ_e)
  decoded from the real bitstreams, and the enhancement's entropy-model family (the target of
  :mod:`vinfo.latent_gap`, the probe side of the coding gain);
- :mod:`vinfo.adapter.layers` -- the codec's building blocks that probe families reuse (the
  synthesis transform, residual blocks, the causal masked convolution);
- :mod:`vinfo.adapter.scenes` -- the synthetic scenes and their label ids (the default data);
- :mod:`vinfo.adapter.jobs` -- the sweep's job launcher, for ladders run as SLURM jobs.
"""
