"""The pure domain of tether: standard library only, no I/O, no clock.

Time, randomness and ids are passed in; every value here is immutable.
"""
