"""Where outputs live and how they are written safely: atomic part files and _SUCCESS markers (store),
input fingerprints (fingerprint), which folders a command may touch (ownership, confine) and the output
lock (lock)."""
