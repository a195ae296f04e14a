"""``orders bench``: each figure measured beside its limit or peer, in the same run."""
