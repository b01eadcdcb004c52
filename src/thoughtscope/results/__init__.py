"""What a run writes: the append-only store (``store``) and the record types (``records``)."""
