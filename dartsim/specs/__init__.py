"""Specifications: models (from Hugging Face config.json), hardware (YAML presets), dtypes."""
