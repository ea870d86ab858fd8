"""Tests of fspnet.response and fspnet.preprocess."""
