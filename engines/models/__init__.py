"""Models: the catalogue (weights, preprocessing, classes), users' own models, the shapes CNN, toys."""
