"""Zhihui (指挥): the composition root, settings and command line shared by the dispatch server,
the media relay and the field client."""
