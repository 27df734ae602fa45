"""Training data and training of the GEEK core model and extractor."""
