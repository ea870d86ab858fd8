"""Tests of fspnet.synthesize and the pgstat / traditional-fit baseline."""
