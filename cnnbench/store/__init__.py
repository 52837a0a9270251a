"""The results store users cite: CSV tables validated before work, locked and replaced atomically
(:mod:`.tables`), and each run's folder, config.json, epochs and checkpoints (:mod:`.runs`)."""
