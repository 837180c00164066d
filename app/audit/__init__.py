"""The append-only audit log of what people did."""
