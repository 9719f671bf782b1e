"""The saliency methods, one family a file; importing a file registers its methods."""
