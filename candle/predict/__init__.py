"""`candle predict`: a final model (or a sweep point's fold/replica models) applied to new
samples, with the ensemble's spread and, when asked, MC-dropout passes."""
