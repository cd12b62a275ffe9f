"""From a sweep to a model people use: the best point (`candle best`) and a final model
trained on all the data (`candle train --from`), described by its model.json card."""
