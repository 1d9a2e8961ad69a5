"""Fleet managers' casework: the alert workflow (ack / close / reopen) and citizens' complaints."""
