"""Research analyses on trained models."""
