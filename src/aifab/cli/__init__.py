"""The ``aifab`` command line (a face: it wires the blocks together and nothing imports it)."""
