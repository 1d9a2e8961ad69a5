"""Stream processing: the pure detection core and the faust workers that run it."""
