"""The experiments around mmfunmatch: the digits demo and its data
(``demo``, ``digits``), the figure-3 ablation (``ablation``), the Shampoo
studies (``shampoo_epochs``, ``benchmark_shampoo``), the training-step
benchmark (``benchmark``), the teacher report (``teacher_report``) and the
stored targets of the ``fix/ic_ens`` baseline (``precompute_teacher``).

Each is run by its shell in tools/ (``python tools/demo.py``, ...), which
calls the module's ``main(argv=None)``; the modules locate the checkout from
their own path (``REPO``) to find configs/ and tools/train.py.
"""
