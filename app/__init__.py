"""FieldSync: the offline-first sync server behind humanitarian field teams' phones."""
