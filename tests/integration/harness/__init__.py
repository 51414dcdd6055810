"""Real-peer test harness: the Callplane server, SIPp and baresip as subprocesses on 127.0.0.1."""
