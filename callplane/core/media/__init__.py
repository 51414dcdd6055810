"""Pure DSP and media wire formats: G.711, RTP, RFC 4733 and in-band DTMF, mixing (numpy)."""
