"""The recordings archive (R2, R17): the catalog of sealed segments and gaps, playback, export."""
