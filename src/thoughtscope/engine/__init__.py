"""The engine: batched latent reasoning with an intervention plan, for every family.

Sites and positions (:mod:`~thoughtscope.engine.sites`), the runner that drives a
family's latent loop over many problems and conditions at once
(:mod:`~thoughtscope.engine.runner`), batch sizing and the logit lens.
"""
