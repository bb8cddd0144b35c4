raise ImportError("the user project search.py was imported instead of ktsweep.search")
