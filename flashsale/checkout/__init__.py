"""The checkout: the one home of flows that span the apps (card, hold, admission, purchase, recovery).

``inventory``, ``waitingroom`` and ``payments`` do not import each other's writes; this package calls
them, in the order a flash sale needs, and reads the facts they publish (a return value, a Redis key).
"""
