"""Network definitions: the functional UNet, HeMIS and the paper's model zoo."""
