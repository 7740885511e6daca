"""Using a trained model: forward pass, Predictor, whole stacks, evaluation on all subsets, preview, quantification."""
