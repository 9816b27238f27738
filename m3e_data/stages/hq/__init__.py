"""m3e-hq: per-row quality rules (quality, langid), MinHash near-dedup (minhash, dedup), decontamination
against evaluation sets (decontaminate), the stage driver (stage) and its HTML report (report)."""
