"""Officers' positions (R9): reported by their clients, stored as a track and a latest fix per
person, pushed to the command room at most once a second per officer."""
