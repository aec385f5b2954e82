"""Entropy coding: entropy models (entropy), the context coder (context), rANS streams (rans),
payload framing (payload) and the layered bitstream (bitstream)."""
