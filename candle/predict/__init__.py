"""`candle predict`: a final model (or a sweep point's fold/replica models) applied to new
samples, with the ensemble's spread and, when asked, MC-dropout passes."""

CHUNK_ROWS = 64  # rows per streamed chunk; full-width NT3: ~250 MiB of text, fields, floats
