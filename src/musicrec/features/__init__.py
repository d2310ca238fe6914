"""Features: id vocabularies, interaction matrices and sequences, play-count weighting."""
