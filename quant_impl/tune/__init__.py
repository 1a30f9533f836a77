"""``quantbench tune``: the fastest (or smallest) recipe within an accuracy budget, searched on a tuning split and
proven once on the test split; recipes it saves run like registered methods (quant_impl.tune.recipes)."""
