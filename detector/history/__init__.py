"""Transaction history from files: read, merged with its labels, in the order the service sees it."""
