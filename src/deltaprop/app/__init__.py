"""The product: what a user runs, built on the engine and the laboratory.

deltaprop has three layers, one folder each:

* the engine, at the package top: :mod:`deltaprop.equations` (the equations, one function
  each), :mod:`deltaprop.backprop` (the drivers), activations, losses, initialisers, the
  network, optimisers' update rules and the gradient check.  It imports with NumPy alone;
* the laboratory, :mod:`deltaprop.stats` (recording, ensembles, studies, the sweep) and
  :mod:`deltaprop.theory` (predictions at initialisation);
* the product, this package: training (:mod:`.train`), data sets (:mod:`.data`), model
  files and checkpoints (:mod:`.files`), plots (:mod:`.plot`), the worked example
  (:mod:`.trace`) and worked solutions (:mod:`.explain`), the command line (:mod:`.cli`)
  and the integrations (:mod:`.sklearn`, :mod:`.dask`).

Nothing is imported here: ``import deltaprop.app.train`` loads only what training needs.
"""
