"""normalize: read each source's raw files (readers, locate), map rows through its recipe (normalize,
labels, textclean) and write OUT/m3e/<source>/ (stage)."""
