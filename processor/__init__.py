"""The stream processor: dedup then rate, as one pure step (`step.py`) run by a faust worker (`app.py`)."""
