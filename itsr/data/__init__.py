"""Dataset acquisition and IDX file reading for MNIST and Fashion-MNIST."""
