"""Work built on mmfunmatch that is not part of the package (as in
MMPretrain's projects/): used from a checkout, never installed."""
