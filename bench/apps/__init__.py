"""Benchmark apps: the same four routes on every server under test.

Routes (bench/run.py checks each server's answers before measuring):

* ``GET /plaintext`` -> ``Hello, World!`` (text/plain)
* ``GET /json`` -> ``{"message":"Hello, World!"}`` (application/json), serialised per request
  by the dynamic servers
* ``GET /user/<id>`` -> the id (text/plain)
* ``POST /upload`` -> the body's length in bytes as text (text/plain); servers that
  cannot run code per request (nginx, Hypersonic static routes) answer a constant
  ``1024`` after reading and discarding the body
"""
