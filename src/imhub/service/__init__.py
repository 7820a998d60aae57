"""Domain services: sessions, login, one-to-one chat, notices. No sockets and no SQL here."""
