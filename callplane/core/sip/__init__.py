"""Sans-IO SIP (RFC 3261): messages, transactions, dialogs and digest authentication."""
