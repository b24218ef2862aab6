"""MNIST digits: the data (IDX files, or scikit-learn's digits offline) and three MLPs with a fast loop."""
