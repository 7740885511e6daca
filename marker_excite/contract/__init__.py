"""What a model and its inputs are: the marker panel and the model contract (ModelSpec with its
Provenance, tensor signature; the model card is its serialised form)."""
