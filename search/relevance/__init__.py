"""The relevance test set of the shared search (issue 6, must-show 1) and its evaluation."""
