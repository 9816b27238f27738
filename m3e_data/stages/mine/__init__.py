"""Hard-negative mining: the encoder, the search and negative selection (mining), consistency and
teacher scores (teacher), semantic near-dedup (semdedup) and the driver (stage)."""
