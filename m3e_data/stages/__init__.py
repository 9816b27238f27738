"""The four stages, each a folder of pure functions over batches plus the driver that runs them.

normalize (raw source files -> OUT/m3e), hq (OUT/m3e -> OUT/m3e-hq), mine (-> OUT/m3e-hq-with-score) and
publish (-> the Hub or a local export). A stage's `stage.py` is its driver; the other modules are the rules
it applies, so a drop reason in a manifest leads to one module here.
"""
