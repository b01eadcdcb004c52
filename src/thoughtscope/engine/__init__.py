"""The engine: batched latent reasoning with an intervention plan, for every family.

Sites and positions (:mod:`~thoughtscope.engine.sites`), conditions and per-row edits
(:mod:`~thoughtscope.engine.edits`), the latent loop as step functions shared with
training (:mod:`~thoughtscope.engine.latent`), the batching driver
(:mod:`~thoughtscope.engine.runner`), every transformers cache detail
(:mod:`~thoughtscope.engine.backend`), batch sizing and the logit lens.
"""
