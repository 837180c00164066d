"""The phones' wire protocol: batched push and cursor-based pull (docs/PROTOCOL.md)."""
