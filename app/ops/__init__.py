"""Operations: liveness and readiness probes."""
