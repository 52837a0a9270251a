"""Examples of your own models for cnnbench (see the README's "Your own model")."""
