"""The credential lifecycle. Services take explicit arguments and own their transactions; they
never touch the request or the session."""
