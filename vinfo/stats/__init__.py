"""What an estimate reports, from fitted probes.

- :mod:`vinfo.stats.pvi`: pointwise V-information, each family's fits and its estimate;
- :mod:`vinfo.stats.bootstrap`: the hierarchical bootstrap and the minimum detectable effect;
- :mod:`vinfo.stats.curves`: loss-data curves; :mod:`vinfo.stats.mdl`: prequential codelength;
- :mod:`vinfo.stats.stock`: stock lossless codecs as references for the null.
"""
