"""Numbers and figures: the paper's statistics and figure types. Imports only the basics and contract."""
