"""RRN, Recurrent Recommender Networks (Wu et al., WSDM 2017), one role per module.

* :mod:`~recozoo.models.rrn.layout` — step sequences per user/movie and packed batches of them;
* :mod:`~recozoo.models.rrn.lstm` — one side's network and the recurrence over a batch;
* :mod:`~recozoo.models.rrn.task` — training as an engine task (user and movie phases);
* :mod:`~recozoo.models.rrn.model` — :class:`~recozoo.models.rrn.model.RRN`, its settings,
  time-aware prediction and persistence (the model's description is that module's docstring).
"""
