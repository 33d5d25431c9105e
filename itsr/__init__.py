"""ITSR: reproduction of an anomaly-detection paper on MNIST and Fashion-MNIST."""
