"""What a model and its inputs are: the marker panel and the model contract (ModelSpec, tensor signature, model card)."""
