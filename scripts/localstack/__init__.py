"""The local stack of ``bash scripts/run.sh``: ``suite`` (firebase-tools' emulator suite and the
scheduler it lacks), ``clients`` (Auth, API and Firestore REST clients) and ``session`` (the
scripted session, tokens and curl examples). ``scripts/stack.py`` is the command line.
"""
