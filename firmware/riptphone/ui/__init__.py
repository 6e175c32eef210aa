"""What the phone shows: screen models (:mod:`.model`), their text and their pixels."""
