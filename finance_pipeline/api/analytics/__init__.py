"""The 002 workspace analytics API: its route (`routes`) and error dialect (`dialect`)."""
