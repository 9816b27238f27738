"""Publishing: the Hub staging layout (hub_stage), the dataset card (card), push (stage) and local
exports (export)."""
