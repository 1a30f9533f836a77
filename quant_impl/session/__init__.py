"""What one ``pytest bench`` run shares and saves: its cells (``cells``), the per-profile cache of baselines,
builds, evaluations and memory figures (``store``), the fresh-process work behind a memory figure
(``memory_child``), the JSON post-processing (``results``) and the pytest glue (``plugin``).

Empty on purpose: the memory child imports ``memory_child`` in a fresh process, and whatever this file imported
would count in every method's peak-memory figure.
"""
