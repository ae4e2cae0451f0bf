"""The test suite's contract oracle (issue 28): every response the tests receive is checked against the published
response schema of the API that answered (Nova's, per microversion, from the tempest library)."""
