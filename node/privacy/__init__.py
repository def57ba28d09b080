"""What keeps a member's data unreadable to others: sealed messages (HPKE)."""
