"""Models for other labs: SavedModel export, the op allow-list, bioimage.io packages."""
