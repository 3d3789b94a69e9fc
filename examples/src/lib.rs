//! Examples for evhub live under `examples/`; this library is empty on purpose.
