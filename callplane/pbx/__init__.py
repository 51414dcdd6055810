"""The telephony shell: SIP transports, registrar, B2BUA and trunks on asyncio."""
