"""DART: per-layer neuron masks, budget allocation, the knowledge-drift detector, and the
recorder that runs them on Hugging Face models and writes traces."""
