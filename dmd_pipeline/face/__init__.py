"""The face channel: facial-expression network (:mod:`.network`) and the landmark-aligned face crop it reads
(:mod:`.crop`). Nothing heavy is imported here."""
