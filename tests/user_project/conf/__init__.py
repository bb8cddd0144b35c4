raise ImportError("the user project conf/ package was imported instead of ktsweep.conf")
